"""The word tables the procedural catalogue is generated from (pure data, no logic).

Every product type belongs to one of five top-level categories and carries:

* ``name``: the product-type phrase used in titles, instructions and as WebShop's ``query``
  field; its words are the type's nouns for the reward's title match;
* ``path``: the breadcrumb below the category root (WebShop's ``product_category``);
* ``attributes``: the pool a product draws its attributes from;
* ``options``: option groups (name -> value pool); a product offers a subset of each pool;
* ``price``: (low, high) dollars;
* ``plural``: whether the phrase is plural/mass (no article in instructions).

Option values inside one group are chosen so that WebShop's fuzzy option match (token-set
ratio > 85) never confuses two of them; ``tests/envs/test_shop.py`` checks this.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProductType:
    name: str
    path: tuple[str, ...]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: tuple[float, float]
    plural: bool = False


@dataclass(frozen=True)
class Category:
    key: str
    root: str
    brands: tuple[str, ...]
    types: tuple[ProductType, ...]


COLORS_A = ("red", "pink", "nude", "coral", "berry", "plum", "mauve")
COLORS_B = ("black", "white", "navy", "green", "pink", "grey", "beige")
COLORS_C = ("black", "white", "navy", "silver", "purple", "teal")
APPAREL_SIZES = ("x-small", "small", "medium", "large", "x-large", "xx-large")
SHOE_SIZES = ("6", "7", "8", "9", "10", "11", "12")
LIQUID_SIZES = ("1 fl oz", "3.4 fl oz", "8 fl oz", "16 fl oz", "32 fl oz")
PACKS = ("single pack", "pack of two", "pack of four", "pack of six", "pack of twelve")

# fmt: off
BEAUTY = Category(
    key="beauty",
    root="Beauty & Personal Care",
    brands=("Lumina", "Verabelle", "Softleaf", "Orchidia", "Purewave", "Maison Rue"),
    types=(
        ProductType(
            "lipstick", ("Makeup", "Lips"),
            ("long lasting", "cruelty free", "matte finish", "paraben free", "vegan",
             "moisturizing", "highly pigmented", "transfer proof"),
            (("color", COLORS_A),),
            (5.0, 38.0),
        ),
        ProductType(
            "mascara", ("Makeup", "Eyes"),
            ("waterproof", "long lasting", "cruelty free", "smudge proof", "volumizing",
             "lengthening", "hypoallergenic", "clump free"),
            (("color", ("black", "brown", "navy", "burgundy")),),
            (5.0, 30.0),
        ),
        ProductType(
            "nail polish", ("Makeup", "Nails"),
            ("quick dry", "long lasting", "non toxic", "chip resistant", "high gloss", "vegan",
             "cruelty free"),
            (("color", ("red", "pink", "nude", "navy", "teal", "lilac", "gold")),),
            (4.0, 19.0),
        ),
        ProductType(
            "face moisturizer", ("Skin Care", "Face"),
            ("fragrance free", "oil free", "non comedogenic", "spf 30", "hyaluronic acid",
             "vitamin c", "dermatologist tested", "anti aging"),
            (("size", ("1 fl oz", "1.7 fl oz", "2.5 fl oz", "3.4 fl oz")),),
            (9.0, 58.0),
        ),
        ProductType(
            "body lotion", ("Skin Care", "Body"),
            ("shea butter", "fragrance free", "fast absorbing", "for dry skin",
             "natural ingredients", "hypoallergenic", "vitamin e"),
            (("size", LIQUID_SIZES), ("scent", ("coconut", "lavender", "mint", "citrus"))),
            (6.0, 32.0),
        ),
        ProductType(
            "shampoo", ("Hair Care", "Shampoo & Conditioner"),
            ("sulfate free", "paraben free", "color safe", "tea tree", "argan oil", "anti dandruff",
             "volumizing", "natural ingredients"),
            (("size", LIQUID_SIZES), ("scent", ("coconut", "lavender", "mint", "unscented"))),
            (5.0, 34.0),
        ),
        ProductType(
            "hair dryer", ("Hair Care", "Styling Tools"),
            ("ionic", "lightweight", "low noise", "fast drying", "ceramic", "foldable handle",
             "cool shot button"),
            (("color", ("black", "white", "rose gold", "purple")),),
            (19.0, 119.0),
        ),
        ProductType(
            "perfume", ("Fragrance", "Women's"),
            ("long lasting", "travel size", "alcohol free", "gift set", "eau de parfum",
             "cruelty free"),
            (("size", ("1 fl oz", "1.7 fl oz", "3.4 fl oz")),
             ("scent", ("vanilla", "jasmine", "amber", "sandalwood", "citrus"))),
            (15.0, 149.0),
        ),
    ),
)

ELECTRONICS = Category(
    key="electronics",
    root="Electronics",
    brands=("Voltix", "Nexora", "Aurion", "Kestrel", "Bytewell", "Tronda"),
    types=(
        ProductType(
            "wireless earbuds", ("Headphones", "Earbuds"),
            ("noise cancelling", "water resistant", "long battery life", "bluetooth 5.3",
             "fast charging", "touch control", "built in microphone"),
            (("color", COLORS_B),),
            (19.0, 199.0), plural=True,
        ),
        ProductType(
            "phone case", ("Cell Phones & Accessories", "Cases"),
            ("shockproof", "slim fit", "wireless charging compatible", "raised edges",
             "anti scratch", "kickstand", "military grade protection"),
            (("color", COLORS_B), ("style", ("clear", "matte", "glitter", "leather"))),
            (7.0, 29.0),
        ),
        ProductType(
            "portable charger", ("Cell Phones & Accessories", "Power Banks"),
            ("fast charging", "usb c", "compact", "dual output", "led display", "airline approved"),
            (("color", COLORS_C),),
            (14.0, 69.0),
        ),
        ProductType(
            "bluetooth speaker", ("Portable Audio", "Speakers"),
            ("waterproof", "long battery life", "deep bass", "stereo pairing",
             "built in microphone", "dustproof", "shockproof"),
            (("color", COLORS_C),),
            (19.0, 149.0),
        ),
        ProductType(
            "smart watch", ("Wearable Technology", "Smartwatches"),
            ("heart rate monitor", "sleep tracking", "water resistant", "gps", "long battery life",
             "blood oxygen", "always on display"),
            (("color", ("black", "silver", "rose gold", "navy")),),
            (29.0, 299.0),
        ),
        ProductType(
            "hdmi cable", ("Accessories", "Cables"),
            ("4k", "high speed", "braided", "gold plated", "ethernet", "8k"),
            (("size", ("3 feet", "6 feet", "10 feet", "15 feet")),),
            (5.0, 25.0),
        ),
        ProductType(
            "wireless mouse", ("Computers & Accessories", "Mice"),
            ("ergonomic", "silent click", "rechargeable", "bluetooth", "adjustable dpi",
             "plug and play"),
            (("color", COLORS_C),),
            (9.0, 59.0),
        ),
        ProductType(
            "usb c hub", ("Computers & Accessories", "Hubs"),
            ("4k hdmi", "power delivery", "aluminum", "sd card reader", "plug and play",
             "gigabit ethernet"),
            (("color", ("grey", "silver", "black")),),
            (15.0, 79.0),
        ),
    ),
)

FASHION = Category(
    key="fashion",
    root="Clothing, Shoes & Jewelry",
    brands=("Northpine", "Calloway", "Rivella", "Ashgrove", "Mirabel", "Tallis"),
    types=(
        ProductType(
            "running shoes", ("Shoes", "Athletic"),
            ("slip resistant", "lightweight", "breathable", "memory foam", "arch support",
             "wide fit", "rubber sole"),
            (("color", COLORS_B), ("size", SHOE_SIZES)),
            (29.0, 139.0), plural=True,
        ),
        ProductType(
            "hoodie", ("Clothing", "Sweatshirts"),
            ("machine washable", "fleece lined", "relaxed fit", "cotton blend", "kangaroo pocket",
             "drawstring hood"),
            (("color", COLORS_B), ("size", APPAREL_SIZES)),
            (19.0, 69.0),
        ),
        ProductType(
            "yoga pants", ("Clothing", "Activewear"),
            ("high waist", "moisture wicking", "four way stretch", "tummy control", "squat proof",
             "side pockets"),
            (("color", COLORS_B), ("size", APPAREL_SIZES)),
            (15.0, 59.0), plural=True,
        ),
        ProductType(
            "denim jacket", ("Clothing", "Coats & Jackets"),
            ("button closure", "classic fit", "stretch fabric", "distressed", "machine washable"),
            (("color", ("light wash", "dark wash", "black", "white")), ("size", APPAREL_SIZES)),
            (29.0, 99.0),
        ),
        ProductType(
            "sun hat", ("Accessories", "Hats & Caps"),
            ("wide brim", "upf 50", "packable", "adjustable strap", "breathable", "straw"),
            (("color", ("khaki", "black", "beige", "navy")),),
            (9.0, 39.0),
        ),
        ProductType(
            "crossbody bag", ("Handbags & Wallets", "Crossbody Bags"),
            ("vegan leather", "adjustable strap", "rfid blocking", "zipper closure",
             "multiple pockets", "lightweight"),
            (("color", ("black", "tan", "burgundy", "olive", "cream")),),
            (15.0, 89.0),
        ),
        ProductType(
            "wool socks", ("Clothing", "Socks & Hosiery"),
            ("merino wool", "moisture wicking", "cushioned", "odor resistant", "thermal",
             "seamless toe"),
            (("color", ("grey", "black", "navy", "oatmeal")),
             ("size", ("small", "medium", "large"))),
            (9.0, 35.0), plural=True,
        ),
        ProductType(
            "rain boots", ("Shoes", "Boots"),
            ("waterproof", "non slip", "natural rubber", "pull on", "mid calf", "removable insole"),
            (("color", ("black", "yellow", "olive", "navy", "red")), ("size", SHOE_SIZES)),
            (25.0, 89.0), plural=True,
        ),
    ),
)

GROCERY = Category(
    key="grocery",
    root="Grocery & Gourmet Food",
    brands=("Harvest Hill", "Goldmeadow", "Kindbite", "Old Orchard", "Sunfield", "Bramble"),
    types=(
        ProductType(
            "gummy bears", ("Snacks", "Candy"),
            ("sugar free", "gluten free", "vegan", "fat free", "non gmo", "individually wrapped",
             "real fruit juice"),
            (("flavor", ("cherry", "mixed fruit", "sour apple", "lemon", "watermelon")),
             ("size", ("5 ounce", "1 pound", "2 pound"))),
            (3.0, 24.0), plural=True,
        ),
        ProductType(
            "coffee beans", ("Beverages", "Coffee"),
            ("organic", "fair trade", "whole bean", "dark roast", "low acid", "single origin",
             "medium roast"),
            (("flavor", ("hazelnut", "vanilla", "caramel", "original")),
             ("size", ("12 ounce", "2 pound", "5 pound"))),
            (8.0, 45.0), plural=True,
        ),
        ProductType(
            "herbal tea", ("Beverages", "Tea"),
            ("caffeine free", "organic", "non gmo", "kosher", "individually wrapped",
             "gluten free"),
            (("flavor", ("chamomile", "peppermint", "ginger", "hibiscus", "lemon")),
             ("pack", PACKS)),
            (4.0, 26.0),
        ),
        ProductType(
            "protein bars", ("Snacks", "Nutrition Bars"),
            ("high protein", "low sugar", "gluten free", "keto friendly", "non gmo", "plant based"),
            (("flavor", ("chocolate", "peanut butter", "cookie dough", "vanilla")),
             ("pack", PACKS)),
            (9.0, 39.0), plural=True,
        ),
        ProductType(
            "olive oil", ("Pantry", "Oils"),
            ("extra virgin", "cold pressed", "organic", "non gmo", "first harvest"),
            (("size", ("250 ml", "500 ml", "1 liter", "3 liter")),),
            (7.0, 49.0),
        ),
        ProductType(
            "dark chocolate", ("Snacks", "Chocolate"),
            ("sugar free", "fair trade", "dairy free", "70 percent cacao", "organic",
             "keto friendly"),
            (("flavor", ("sea salt", "almond", "orange", "mint", "original")), ("pack", PACKS)),
            (4.0, 32.0),
        ),
        ProductType(
            "granola", ("Pantry", "Breakfast Foods"),
            ("gluten free", "low sugar", "high fiber", "whole grain", "organic", "vegan"),
            (("flavor", ("honey almond", "blueberry", "cinnamon", "cranberry")),
             ("size", ("11 ounce", "1 pound", "32 ounce"))),
            (4.0, 22.0),
        ),
        ProductType(
            "beef jerky", ("Snacks", "Meat Snacks"),
            ("high protein", "grass fed", "low sodium", "no preservatives", "keto friendly",
             "gluten free"),
            (("flavor", ("teriyaki", "original", "hickory", "sweet and spicy")),
             ("size", ("3 ounce", "10 ounce", "1 pound"))),
            (6.0, 34.0),
        ),
    ),
)

HOME = Category(
    key="home",
    root="Home & Kitchen",
    brands=("Hearthly", "Oakline", "Nestwell", "Larkmoor", "Brightloom", "Casavia"),
    types=(
        ProductType(
            "throw pillow covers", ("Home Decor", "Pillows"),
            ("machine washable", "hidden zipper", "linen", "velvet", "double sided"),
            (("color", COLORS_B), ("size", ("16 x 16 inch", "18 x 18 inch", "20 x 20 inch"))),
            (8.0, 34.0), plural=True,
        ),
        ProductType(
            "bath towels", ("Bath", "Towels"),
            ("100 percent cotton", "quick drying", "highly absorbent", "soft", "oeko tex"),
            (("color", COLORS_B), ("pack", ("pack of two", "pack of four", "pack of six"))),
            (14.0, 59.0), plural=True,
        ),
        ProductType(
            "scented candle", ("Home Decor", "Candles"),
            ("soy wax", "long burning", "lead free wick", "non toxic", "gift ready"),
            (("scent", ("vanilla", "lavender", "eucalyptus", "cedarwood", "citrus")),),
            (9.0, 42.0),
        ),
        ProductType(
            "coffee mug", ("Kitchen & Dining", "Drinkware"),
            ("dishwasher safe", "microwave safe", "ceramic", "insulated", "lead free",
             "large capacity"),
            (("color", COLORS_B), ("size", ("12 ounce", "16 ounce", "20 ounce"))),
            (6.0, 29.0),
        ),
        ProductType(
            "bed sheets", ("Bedding", "Sheets & Pillowcases"),
            ("deep pocket", "wrinkle resistant", "breathable", "microfiber", "organic cotton",
             "hypoallergenic"),
            (("color", COLORS_B), ("size", ("twin", "full", "queen", "king"))),
            (19.0, 89.0), plural=True,
        ),
        ProductType(
            "desk lamp", ("Lighting", "Lamps"),
            ("dimmable", "usb charging port", "eye caring", "touch control", "adjustable arm",
             "energy efficient"),
            (("color", COLORS_C),),
            (14.0, 69.0),
        ),
        ProductType(
            "storage basket", ("Storage & Organization", "Baskets"),
            ("foldable", "handwoven", "with handles", "cotton rope", "collapsible", "washable"),
            (("color", ("natural", "grey", "white", "black")),
             ("size", ("small", "medium", "large"))),
            (9.0, 39.0),
        ),
        ProductType(
            "shower curtain", ("Bath", "Shower Curtains"),
            ("waterproof", "mildew resistant", "machine washable", "weighted hem",
             "rust proof grommets", "extra long"),
            (("color", COLORS_B),),
            (9.0, 35.0),
        ),
    ),
)
# fmt: on

CATEGORIES: tuple[Category, ...] = (BEAUTY, ELECTRONICS, FASHION, GROCERY, HOME)

#: neutral filler for descriptions; must not contain any attribute phrase (checked in tests)
DESCRIPTION_OPENERS = (
    "Designed for everyday use, this {type} is made by {brand} with care.",
    "Meet the {brand} {type}, a dependable pick for daily routines.",
    "The {type} from {brand} combines good value with thoughtful details.",
    "A customer favourite, this {brand} {type} is ready when you are.",
)
DESCRIPTION_CLOSERS = (
    "Backed by a 30 day return policy.",
    "Ships in recyclable packaging.",
    "Makes a thoughtful present for friends and family.",
    "Customer support is available seven days a week.",
)
GENERIC_BULLETS = (
    "SATISFACTION PROMISE: contact us with any question and we will help",
    "QUALITY CHECKED: every unit is inspected before it leaves the warehouse",
    "EASY CARE: simple to keep in great condition",
    "WHAT YOU GET: the item as shown and a quick start card",
)
