"""Engine integrations (verl, TRL). Each subpackage imports its engine lazily."""
