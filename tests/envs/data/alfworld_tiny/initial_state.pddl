; A tiny hand-written ALFWorld problem (empg test data): one apple hidden in a closed cabinet,
; a mug on the countertop; the task is to put an apple on the dining table.
(define (problem empg_tiny_pick_and_place)
    (:domain alfred)
    (:objects
        agent1 - agent
        AppleType - otype
        MugType - otype
        KnifeType - otype
        ButterKnifeType - otype
        CabinetType - rtype
        CounterTopType - rtype
        DiningTableType - rtype
        SinkBasinType - rtype
        MicrowaveType - rtype
        FridgeType - rtype
        Apple_bar__minus_01_dot_50_bar__plus_00_dot_90_bar__minus_01_dot_20 - object
        Mug_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00 - object
        Cabinet_bar__minus_01_dot_50_bar__plus_00_dot_40_bar__minus_01_dot_20 - receptacle
        CounterTop_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00 - receptacle
        DiningTable_bar__minus_02_dot_00_bar__plus_00_dot_75_bar__plus_01_dot_50 - receptacle
        loc_bar_0_bar_0_bar_0_bar_30 - location
        loc_bar__minus_6_bar__minus_5_bar_2_bar_45 - location
        loc_bar_3_bar__minus_4_bar_1_bar_45 - location
        loc_bar__minus_7_bar_5_bar_3_bar_45 - location
    )
    (:init
        (atLocation agent1 loc_bar_0_bar_0_bar_0_bar_30)
        (receptacleType Cabinet_bar__minus_01_dot_50_bar__plus_00_dot_40_bar__minus_01_dot_20 CabinetType)
        (receptacleType CounterTop_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00 CounterTopType)
        (receptacleType DiningTable_bar__minus_02_dot_00_bar__plus_00_dot_75_bar__plus_01_dot_50 DiningTableType)
        (receptacleAtLocation Cabinet_bar__minus_01_dot_50_bar__plus_00_dot_40_bar__minus_01_dot_20 loc_bar__minus_6_bar__minus_5_bar_2_bar_45)
        (receptacleAtLocation CounterTop_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00 loc_bar_3_bar__minus_4_bar_1_bar_45)
        (receptacleAtLocation DiningTable_bar__minus_02_dot_00_bar__plus_00_dot_75_bar__plus_01_dot_50 loc_bar__minus_7_bar_5_bar_3_bar_45)
        (openable Cabinet_bar__minus_01_dot_50_bar__plus_00_dot_40_bar__minus_01_dot_20)
        (objectType Apple_bar__minus_01_dot_50_bar__plus_00_dot_90_bar__minus_01_dot_20 AppleType)
        (objectType Mug_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00 MugType)
        (pickupable Apple_bar__minus_01_dot_50_bar__plus_00_dot_90_bar__minus_01_dot_20)
        (pickupable Mug_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00)
        (isReceptacleObject Mug_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00)
        (inReceptacle Apple_bar__minus_01_dot_50_bar__plus_00_dot_90_bar__minus_01_dot_20 Cabinet_bar__minus_01_dot_50_bar__plus_00_dot_40_bar__minus_01_dot_20)
        (inReceptacle Mug_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00 CounterTop_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00)
        (objectAtLocation Apple_bar__minus_01_dot_50_bar__plus_00_dot_90_bar__minus_01_dot_20 loc_bar__minus_6_bar__minus_5_bar_2_bar_45)
        (objectAtLocation Mug_bar__plus_00_dot_80_bar__plus_00_dot_95_bar__minus_01_dot_00 loc_bar_3_bar__minus_4_bar_1_bar_45)
        (canContain CabinetType AppleType)
        (canContain CabinetType MugType)
        (canContain CounterTopType AppleType)
        (canContain CounterTopType MugType)
        (canContain DiningTableType AppleType)
        (canContain DiningTableType MugType)
    )
    (:goal
        (and
            (exists (?r - receptacle)
                (exists (?o - object)
                    (and
                        (objectType ?o AppleType)
                        (receptacleType ?r DiningTableType)
                        (inReceptacle ?o ?r)
                    )
                )
            )
        )
    )
)
