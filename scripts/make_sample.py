#!/usr/bin/env python3
"""Generate the bundled WikiSQL-format sample in src/experiments/data/sample/ (the `data.source=sample` data).

Tables come from hand-written templates, one per domain (headers, value pools, phrasing of conditions), filled
in with a seeded RNG; several tables per domain, split table-disjointly into train/dev/test. Questions are
built around logical forms drawn from each table's rows (every condition is taken from one anchor row, so the
query matches it), phrased with the domain's templates, with many text values in a letter case that differs
from the cell, as in WikiSQL. Every gold query is rendered with `experiments.data.prompt.render_sql`, executed in
an in-memory SQLite table (text columns TEXT COLLATE NOCASE, real columns REAL) and kept only if its result is
non-empty and free of NULL. The sample's properties are asserted at the end; any failure exits non-zero.

Pure standard library plus the project's `experiments.data.records` and `experiments.data.prompt`. Deterministic:
the same code writes the same bytes on any machine (no iteration over unordered sets, fixed seed).

    python scripts/make_sample.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from experiments.data.prompt import format_number, quote_identifier, render_sql  # noqa: E402
from experiments.data.records import (  # noqa: E402
    AGG_OPS,
    COND_OPS,
    Example,
    Query,
    Table,
    validate_example,
)

SEED = 20240917
OUT_DIR = ROOT / "src" / "experiments" / "data" / "sample"
SPLITS = ("train", "dev", "test")
QUESTIONS_PER_TABLE = 10
# More train tables per domain, drawn after the rest from a second seeded stream, so dev, test and the first 640
# train questions stay as they were: a small model only learns to copy values from the question (rather than
# recall them) when it sees many tables' values.
EXTRA_TRAIN_TABLES_PER_DOMAIN = 12
MAX_BYTES = 2_000_000

# ------------------------------------------------------------------------------------------------------------
# Value pools (ASCII letters only in anything a question may re-case: SQLite's NOCASE folds ASCII only)
# ------------------------------------------------------------------------------------------------------------

FIRST = (
    "James", "Michael", "Chris", "David", "Kevin", "Marcus", "Anthony", "Brian", "Jason", "Eric", "Tyrone",
    "Derek", "Carlos", "Luis", "Andre", "Paul", "Mark", "Steve", "Tony", "Ray", "Vince", "Jalen",
    "Darius", "Terrence", "Greg", "Sam", "Pete", "Alex", "Nikola", "Tomas", "Pierre", "Jean", "Mario",
    "Marco", "Sergio", "Ivan", "Oscar", "Hugo", "Lars", "Sven", "Kenji", "Diego", "Rafael", "Jorge",
    "Patrick", "Sean", "Ryan", "Kyle", "Dan", "Joe", "Bill", "Tom", "Matt", "Jamal", "Rasheed", "Keith",
    "Emeka", "Walt", "Dwayne", "Morris", "Lamar",
)
FEMALE = (
    "Maria", "Anna", "Laura", "Sarah", "Emily", "Jessica", "Nicole", "Karen", "Lisa", "Elena", "Sofia",
    "Yuki", "Rachel", "Megan", "Olivia", "Claire", "Diane", "Helen", "Julia", "Monica", "Paula", "Rosa",
    "Tina", "Vera", "Ingrid", "Leah", "Naomi",
)
LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Thomas",
    "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams",
    "Nelson", "Hill", "Campbell", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner",
    "Parker", "Collins", "Edwards", "Stewart", "Morris", "Murphy", "Cook", "Rogers", "Morgan", "Cooper",
    "Peterson", "Reed", "Bailey", "Bell", "Kelly", "Howard", "Ward", "Cox", "Richardson", "Wood",
    "Watson", "Brooks", "Bennett", "Gray", "Hughes", "Price", "Sanders", "Myers", "Long", "Ross",
    "Foster", "O'Brien", "O'Neal", "McDonald", "McKenzie", "Fernandez", "Garcia", "Petrovic", "Novak",
    "Kovac", "Rossi", "Dubois", "Schmidt", "Larsson", "Tanaka", "Silva", "Santos", "Hayes", "Grant",
    "Holmes", "Dunn", "Webb", "Barnes", "Burke", "Doyle", "Haas", "Hale", "Hardy", "Marsh", "Shaw",
    "Sutton", "Stone", "Wallace", "Warren", "Wells", "Weber",
)
EVERYONE = FIRST + FEMALE

COLLEGES = (
    "Duke", "North Carolina", "UCLA", "Kentucky", "Michigan State", "Georgetown", "Arizona", "Kansas",
    "Syracuse", "Villanova", "Connecticut", "Indiana", "Louisville", "Iowa State", "Ohio State", "Florida",
    "Wake Forest", "Oregon State", "Stanford", "Memphis", "Purdue", "Butler CC (KS)", "Temple", "Cincinnati",
    "Xavier", "Marquette", "Seton Hall", "Fresno State", "Partizan (Serbia)", "Real Madrid (Spain)",
    "Olympiacos (Greece)", "Texas A&M", "Southern Miss", "Saint Joseph's",
)
NATIONS = ("United States", "Canada", "France", "Spain", "Argentina", "Lithuania", "Serbia", "Australia",
           "Nigeria", "Germany", "Brazil", "Italy", "Greece", "Croatia", "Turkey", "Slovenia", "Senegal",
           "China", "Puerto Rico")
HOCKEY_NATIONS = (
    "Canada", "Canada", "Canada", "United States", "United States", "Sweden", "Finland", "Russia",
    "Czech Republic", "Slovakia", "Switzerland", "Germany", "Latvia",
)
ATHLETICS_NATIONS = ("United States", "Jamaica", "Great Britain", "Bahamas", "Trinidad and Tobago", "Kenya",
                     "Botswana", "Nigeria", "Australia", "France", "Poland", "Cuba", "Brazil", "Japan",
                     "South Africa", "Belgium", "Dominican Republic")
GOLF_NATIONS = ("United States", "United States", "United States", "England", "Scotland", "Australia",
                "South Africa", "Spain", "Japan", "Sweden", "Argentina", "Fiji", "Germany", "Ireland",
                "Northern Ireland", "New Zealand", "Zimbabwe", "Canada")
NHL_TEAMS = (
    "Toronto Maple Leafs", "Montreal Canadiens", "Boston Bruins", "New York Rangers", "Chicago Blackhawks",
    "Detroit Red Wings", "Calgary Flames", "Edmonton Oilers", "Vancouver Canucks", "Buffalo Sabres",
    "Pittsburgh Penguins", "Philadelphia Flyers", "St. Louis Blues", "Los Angeles Kings", "Winnipeg Jets",
    "Quebec Nordiques", "Hartford Whalers", "New Jersey Devils", "Minnesota North Stars",
)
JUNIOR_TEAMS = ("Kitchener Rangers (OHL)", "Oshawa Generals (OHL)", "London Knights (OHL)",
                "Kamloops Blazers (WHL)", "Regina Pats (WHL)", "Medicine Hat Tigers (WHL)",
                "Shawinigan Cataractes (QMJHL)", "Hull Olympiques (QMJHL)", "Boston University (Hockey East)",
                "University of Michigan (CCHA)", "University of Minnesota (WCHA)", "Djurgarden (Sweden)",
                "HC Dynamo Moscow (Russia)", "Jokerit (Finland)", "Sault Ste. Marie Greyhounds (OHL)",
                "Portland Winterhawks (WHL)", "Cornell University (ECAC)", "HC Sparta Praha (Czech Republic)")
HOCKEY_POSITIONS = ("Centre", "Defence", "Left Wing", "Right Wing", "Goaltender")
NBA_POSITIONS = (
    "Guard", "Forward", "Center", "Guard-Forward", "Forward-Center", "Point guard", "Shooting guard",
    "Small forward", "Power forward",
)
EP_TITLES = (
    "Pilot", "Homecoming", "Blood Ties", "The Long Goodbye", "Second Chances", "Ghosts", "Lockdown",
    "The Visitor", "Fault Lines", "Old Friends", "Under Pressure", "The Last Word", "Crossroads",
    "Burning Bridges", "Night Moves", "Sins of the Father", "The Deal", "Runaway", "Cold Case",
    "Trust Issues", "Collateral", "The Storm", "Full Circle", "Breaking Point", "Safe Harbor", "Dead Weight",
    "A Fine Line", "Masks", "The Hunt", "Family Matters", "Point of No Return", "The Offer", "Wildfire",
    "Missing Pieces", "Truth or Dare", "Exit Strategy", "The Getaway", "Blind Spot", "Loose Ends", "Reunion",
    "First Contact", "Double Down", "Heat Wave", "The Verdict", "Fallout", "Sleepless", "The Calm",
    "Silent Night", "Fresh Start", "Endgame",
)
FILM_TITLES = ("Midnight Run to Denver", "The Glass Harbor", "Silver Lining Road", "Northern Exposure Point",
               "A Quiet Summer", "The Last Lighthouse", "Crimson Tide Rising", "Paper Kingdoms",
               "The Long Way Home", "Echoes of July", "Iron Meadow", "Blue Valley", "The Night Shift",
               "Broken Compass", "Small Town Heroes", "City of Strangers", "The Orchard", "Fast Company",
               "Winter Garden", "Desert Rose", "The Informant", "Lucky Streak", "Hollow Point", "Open Water",
               "The Second Act", "Wild Horses", "Borrowed Time", "Hard Rain", "The Understudy", "Gold Coast",
               "Sunday Best", "Shadow Play", "The Crossing", "Eastbound", "Parallel Lines", "High Tide")
ALBUM_TITLES = ("Neon Skyline", "Paper Hearts", "Wide Awake", "Northern Soul", "Gravity", "Salt and Silver",
                "Late Bloomer", "Quiet Hours", "Runaway Train", "Golden Hour", "Static", "Lighthouse",
                "Afterglow", "Open Roads", "Small Victories", "Evergreen", "Firelight", "Undertow",
                "Second Nature", "Midnight Radio", "Stray Dogs", "Satellite Hearts", "Wildflower", "Tin Roof",
                "Harbor Lights", "Monochrome", "The Long Night", "Parade", "Echo Park", "Half Moon")
SONG_TITLES = ("Come Undone", "Summer Rain", "Hold On Tight", "Electric", "Bad Habit", "Carry Me Home",
               "Fever Dream", "Heartbeat", "Only You", "Paper Planes", "Shine", "Run Away", "Slow Dance",
               "Wanderlust", "Better Days", "Sweet Surrender", "Golden", "Ghost Town", "Falling Star",
               "Tonight Tonight", "Say My Name", "Brand New Day", "Rewind", "Lonely Road", "Supernova",
               "Caught Up", "Hometown Girl", "Dancing Shoes", "Back to You", "Wild Heart")
GAME_TITLES = (
    "Star Raiders", "Dungeon Depths", "Turbo Racer", "Shadow Ops", "Kingdom Tactics", "Galactic Siege",
    "Puzzle Panic", "Sky Pirates", "Castle Crusade", "Neon Drift", "Frontier Wars", "Monster Garden",
    "Deep Blue Quest", "Ninja Circuit", "Iron Legion", "Pixel Party", "Storm Chasers", "Outpost Zero",
    "Dragon Valley", "Street League", "Rocket Rally", "Haunted Manor", "Jungle Run", "Arctic Strike",
    "Zombie Harbor", "Time Bandits",
)
STUDIOS = (
    "Paramount Pictures", "Universal Pictures", "Warner Bros.", "20th Century Fox", "Columbia Pictures",
    "Lionsgate", "Miramax", "New Line Cinema", "Focus Features", "DreamWorks", "Touchstone Pictures",
)
FILM_NOTES = (
    "Lead role", "Supporting role", "Cameo", "Voice role", "Also producer", "Nominated - Golden Globe",
    "Television film", "Uncredited",
)
RECORD_LABELS = ("Columbia", "Epic", "Atlantic", "Capitol", "Interscope", "Island", "Geffen", "Elektra",
                 "Sub Pop", "Warner Bros.", "Virgin", "RCA", "Def Jam", "Matador")
CERTIFICATIONS = ("Gold", "Platinum", "2x Platinum", "Silver", "None", "Gold", "Platinum")
CONSTRUCTORS = ("Ferrari", "McLaren-Mercedes", "Williams-Renault", "Benetton-Ford", "Jordan-Honda",
                "Sauber-Petronas", "Tyrrell-Ford", "Minardi-Ford", "Ligier-Renault", "Footwork-Hart",
                "Arrows-Yamaha", "Stewart-Ford", "Prost-Peugeot")
RETIREMENTS = ("Engine", "Gearbox", "Accident", "Spun off", "Hydraulics", "Electrical", "Suspension",
               "Collision", "Fuel pressure", "Transmission")
BUILDING_FIRST = ("One", "Two", "Meridian", "Harbor", "Liberty", "Summit", "Crescent", "Pinnacle", "Union",
                  "Granite", "Parkview", "Lakeside", "Sterling", "Capitol", "Heritage", "Republic", "Wells",
                  "Commerce", "Pacific", "Atlantic", "Central", "Riverfront")
BUILDING_LAST = ("Tower", "Plaza", "Center", "Place", "Building", "Square", "Centre")
STREETS = ("Main Street", "Market Street", "Pine Street", "Commerce Street", "5th Avenue", "Broadway",
           "Lake Shore Drive", "Peachtree Street", "Travis Street", "Fannin Street", "1st Avenue",
           "Congress Avenue", "Wacker Drive", "Union Street", "Grand Avenue")
TOWNS = (
    "Greenfield", "Franklin", "Clinton", "Madison", "Georgetown", "Salem", "Fairview", "Riverside",
    "Springfield", "Ashland", "Oxford", "Milford", "Dover", "Lebanon", "Kingston", "Marion", "Jackson",
    "Burlington", "Manchester", "Newport", "Shelbyville", "Columbia", "Hudson", "Lexington", "Winchester",
    "Bristol", "Auburn", "Troy", "Monroe", "Plymouth", "Centerville", "Brookfield", "Danville", "Dayton",
    "Jasper", "Warsaw", "Peru", "Rochester", "Mount Vernon", "Lancaster", "Bedford", "Princeton",
)
MASCOTS = (
    "Cougars", "Tigers", "Eagles", "Panthers", "Bulldogs", "Raiders", "Knights", "Trojans", "Wildcats",
    "Hornets", "Spartans", "Pioneers", "Falcons", "Braves", "Rockets", "Warriors", "Vikings", "Patriots",
)
COUNTIES = ("Marion", "Hamilton", "Hancock", "Shelby", "Johnson", "Madison", "Boone", "Morgan", "Hendricks",
            "Delaware", "Grant", "Howard", "Wayne", "Henry", "Rush", "Decatur", "Jefferson", "Clark", "Lake",
            "Porter", "Franklin", "Washington", "Union", "Jackson", "Monroe", "Warren")
FOOTBALL_CLUBS = (
    "Atletico Valverde", "Racing Ferrol", "CD Toledo", "UD Salamanca", "CF Extremadura", "Real Jaen",
    "SD Compostela", "CD Leganes", "AD Alcorcon", "UE Lleida", "Girona FC", "CE Sabadell", "CD Castellon",
    "Burgos CF", "Cultural Leonesa", "Pontevedra CF", "Lorca Deportiva", "CD Ourense", "Palencia CF",
    "Zamora CF", "CD Badajoz", "Gimnastica Segoviana", "CD Guadalajara", "UD Melilla", "Sporting Mahones",
    "CD Linares",
)
TOURNAMENTS = {
    "Rome": "Clay", "Miami": "Hard", "Indian Wells": "Hard", "Hamburg": "Clay", "Stuttgart": "Clay",
    "Tokyo": "Hard", "Sydney": "Hard", "Rotterdam": "Hard (i)", "Barcelona": "Clay", "Monte Carlo": "Clay",
    "Cincinnati": "Hard", "Madrid": "Clay", "Queen's Club": "Grass", "Halle": "Grass", "Dubai": "Hard",
    "Doha": "Hard", "Auckland": "Hard", "Washington": "Hard", "Moscow": "Carpet (i)", "Lyon": "Carpet (i)",
    "Eastbourne": "Grass", "Kitzbuhel": "Clay",
}
NFL_TEAMS = (
    "Miami Dolphins", "New York Jets", "New England Patriots", "Indianapolis Colts", "Dallas Cowboys",
    "Green Bay Packers", "Chicago Bears", "Detroit Lions", "Minnesota Vikings", "Oakland Raiders",
    "San Diego Chargers", "Kansas City Chiefs", "Denver Broncos", "Seattle Seahawks", "Pittsburgh Steelers",
    "Cleveland Browns", "Cincinnati Bengals", "Houston Oilers", "Jacksonville Jaguars", "Tennessee Titans",
    "Buffalo Bills", "Philadelphia Eagles",
)
STADIUMS = (
    "Rich Stadium", "Mile High Stadium", "Kingdome", "Arrowhead Stadium", "Pro Player Stadium",
    "Giants Stadium", "Foxboro Stadium", "RCA Dome", "Texas Stadium", "Lambeau Field", "Soldier Field",
    "Pontiac Silverdome", "Hubert H. Humphrey Metrodome", "Oakland-Alameda County Coliseum",
    "Qualcomm Stadium", "Three Rivers Stadium", "Cleveland Browns Stadium", "Riverfront Stadium", "Astrodome",
    "Veterans Stadium",
)
NBA_CITIES = (
    "Boston", "Miami", "Chicago", "Detroit", "Atlanta", "Orlando", "Charlotte", "Washington", "New York",
    "Philadelphia", "Milwaukee", "Cleveland", "Indiana", "Houston", "San Antonio", "Dallas", "Denver", "Utah",
    "Phoenix", "Portland", "Seattle", "Sacramento", "L.A. Lakers", "L.A. Clippers", "Golden State",
    "Minnesota", "Memphis", "New Orleans",
)
ARENAS = ("TD Banknorth Garden", "American Airlines Arena", "United Center", "The Palace of Auburn Hills",
          "Philips Arena", "Amway Arena", "Madison Square Garden", "Wachovia Center", "Bradley Center",
          "Quicken Loans Arena", "Conseco Fieldhouse", "Toyota Center", "AT&T Center", "Pepsi Center",
          "EnergySolutions Arena", "US Airways Center", "Rose Garden", "KeyArena", "Staples Center",
          "Oracle Arena", "Target Center", "FedExForum", "New Orleans Arena")
MLB_POSITIONS = ("C", "1B", "2B", "3B", "SS", "LF", "CF", "RF", "DH")
SHIP_WORDS = (
    "Ajax", "Valiant", "Intrepid", "Resolute", "Vigilant", "Defiant", "Mohawk", "Cossack", "Sikh", "Gurkha",
    "Nubian", "Tartar", "Ashanti", "Bedouin", "Eskimo", "Maori", "Zulu", "Somali", "Matabele", "Punjabi",
    "Haida", "Iroquois", "Athabaskan", "Huron", "Saskatchewan", "Restigouche", "Kootenay", "Gatineau",
    "Ottawa", "Fraser", "Chaudiere", "Swift", "Hardy", "Daring", "Rapid", "Stalwart",
)
SHIPBUILDERS = (
    "Vickers-Armstrongs, Tyne", "Scotts, Greenock", "Alexander Stephen and Sons", "John Brown & Company",
    "Cammell Laird", "Yarrow Shipbuilders", "Swan Hunter", "Bath Iron Works", "Federal Shipbuilding",
    "Halifax Shipyards", "Bethlehem Steel", "Consolidated Steel",
)
STATIONS = (
    "Harbour Front", "Market Square", "Union Station", "City Hall", "Elm Park", "Riverside", "Oak Grove",
    "University", "Stadium", "Kings Cross Road", "Victoria Park", "North Point", "Bayview", "Mill Lane",
    "Queen Street", "Westgate", "Eastfield", "Cedar Hill", "Airport", "Exhibition", "Lakeshore", "Maple Leaf",
    "Central", "Southgate", "Hospital", "Depot Road", "Fairgrounds", "Museum",
)
MUNICIPALITIES = (
    "Ashford", "Bramley", "Carlton", "Dunmore", "Eastwood", "Fairhaven", "Glenwood", "Hartley", "Ironton",
    "Juniper", "Kenwood", "Lindale", "Maplewood", "Northfield", "Oakdale", "Pinecrest", "Quincy", "Rosedale",
    "Stanton", "Thornbury", "Upton", "Vernon", "Westbrook", "Yardley",
)
FORMATS = ("Country", "Classic rock", "News/Talk", "Adult contemporary", "Top 40", "Sports", "Christian",
           "Public radio", "Oldies", "Regional Mexican", "Hot AC", "Classical", "Jazz", "Variety")
RADIO_OWNERS = ("Cumulus Media", "Townsquare Media", "Alpha Media", "Saga Communications", "iHeartMedia",
                "Bicoastal Media", "Educational Media Foundation", "Results Broadcasting", "Salem Media")
DEVELOPERS = (
    "Blue Shift Studios", "Iron Gate Interactive", "Pixel Harbor", "Nightfall Games", "Redwood Labs",
    "Quantum Owl", "Sunforge", "Tidal Wave Entertainment", "Northstar Digital", "Copperhead Games",
)
PLATFORMS = (
    "PC", "PlayStation 2", "Xbox", "GameCube", "Nintendo DS", "PlayStation 3", "Xbox 360", "Wii", "PSP",
)
GENRES = (
    "Action", "Role-playing", "Racing", "Strategy", "Platform", "Puzzle", "Sports", "Shooter", "Adventure",
)
AWARDS = ("Grammy Awards", "MTV Video Music Awards", "Billboard Music Awards", "American Music Awards",
          "Juno Awards", "BRIT Awards", "Teen Choice Awards", "Soul Train Music Awards")
AWARD_CATEGORIES = ("Best New Artist", "Album of the Year", "Song of the Year", "Best Rock Album",
                    "Best Pop Vocal Performance", "Favorite Band", "Best Music Video", "Breakthrough Artist",
                    "Best Live Performance", "Record of the Year")
RANGES = {
    "Colorado": ("Sawatch Range", "Front Range", "San Juan Mountains", "Elk Mountains", "Mosquito Range"),
    "the Alps": ("Pennine Alps", "Bernese Alps", "Graian Alps", "Mont Blanc massif", "Dauphine Alps"),
    "Alaska": ("Alaska Range", "Saint Elias Mountains", "Chugach Mountains", "Wrangell Mountains"),
    "the Andes": ("Cordillera Blanca", "Cordillera Real", "Cordillera Huayhuash", "Puna de Atacama"),
}
PEAK_WORDS = (
    "Harlan", "Eagle", "Silver", "Granite", "Thunder", "Crystal", "Raven", "Summit", "Bear", "Storm", "Aspen",
    "Iron", "Cloud", "Hawk", "Wolf", "Snow", "Red", "Twin", "Castle", "Long", "Pyramid", "Glacier",
)
UNI_NICKNAMES = (
    "Bulldogs", "Lakers", "Lions", "Hawks", "Falcons", "Rangers", "Grizzlies", "Mustangs", "Owls", "Bobcats",
    "Huskies", "Cardinals", "Thunderbirds", "Chargers", "Mavericks", "Titans",
)
STATES = (
    "Ohio", "Michigan", "Indiana", "Wisconsin", "Montana", "Idaho", "Oregon", "Kansas", "Iowa", "Nebraska",
)
OCCUPATIONS = (
    "Teacher", "Nurse", "Firefighter", "Accountant", "Student", "Chef", "Police officer", "Salesman",
    "Mechanic", "Lawyer", "Bartender", "Personal trainer", "Realtor", "Pastor", "Truck driver", "Hairdresser",
    "Graphic designer", "Stay-at-home mom",
)
CRICKET_TEAMS = ("Australia", "England", "India", "Pakistan", "South Africa", "New Zealand", "Sri Lanka",
                 "West Indies", "Zimbabwe", "Bangladesh")
BOUT_TYPES = ("KO", "TKO", "UD", "SD", "MD", "RTD", "PTS")
VENUES = ("Madison Square Garden, New York", "MGM Grand, Las Vegas", "Caesars Palace, Las Vegas",
          "Boardwalk Hall, Atlantic City", "The Forum, Inglewood", "Wembley Arena, London",
          "Olympia, Liverpool", "Mohegan Sun Arena, Uncasville", "Staples Center, Los Angeles",
          "Convention Hall, Atlantic City", "Bally's, Atlantic City", "Foxwoods Resort, Mashantucket")
COUNTRY_INFO = {
    "Africa": (
        ("Nigeria", "Abuja", "English"), ("Kenya", "Nairobi", "Swahili"), ("Ghana", "Accra", "English"),
        ("Senegal", "Dakar", "French"), ("Ethiopia", "Addis Ababa", "Amharic"),
        ("Morocco", "Rabat", "Arabic"), ("Egypt", "Cairo", "Arabic"), ("Tanzania", "Dodoma", "Swahili"),
        ("Uganda", "Kampala", "English"), ("Mali", "Bamako", "French"), ("Zambia", "Lusaka", "English"),
        ("Angola", "Luanda", "Portuguese"), ("Namibia", "Windhoek", "English"),
        ("Botswana", "Gaborone", "English"), ("Rwanda", "Kigali", "Kinyarwanda"),
        ("Tunisia", "Tunis", "Arabic"),
    ),
    "Europe": (
        ("France", "Paris", "French"), ("Germany", "Berlin", "German"), ("Italy", "Rome", "Italian"),
        ("Spain", "Madrid", "Spanish"), ("Portugal", "Lisbon", "Portuguese"), ("Poland", "Warsaw", "Polish"),
        ("Austria", "Vienna", "German"), ("Belgium", "Brussels", "Dutch"), ("Greece", "Athens", "Greek"),
        ("Hungary", "Budapest", "Hungarian"), ("Sweden", "Stockholm", "Swedish"),
        ("Norway", "Oslo", "Norwegian"), ("Finland", "Helsinki", "Finnish"), ("Ireland", "Dublin", "Irish"),
        ("Netherlands", "Amsterdam", "Dutch"), ("Denmark", "Copenhagen", "Danish"),
    ),
    "South America": (
        ("Brazil", "Brasilia", "Portuguese"), ("Argentina", "Buenos Aires", "Spanish"),
        ("Chile", "Santiago", "Spanish"), ("Peru", "Lima", "Spanish"), ("Colombia", "Bogota", "Spanish"),
        ("Venezuela", "Caracas", "Spanish"), ("Ecuador", "Quito", "Spanish"), ("Bolivia", "Sucre", "Spanish"),
        ("Paraguay", "Asuncion", "Spanish"), ("Uruguay", "Montevideo", "Spanish"),
        ("Guyana", "Georgetown", "English"), ("Suriname", "Paramaribo", "Dutch"),
    ),
    "Asia": (
        ("Japan", "Tokyo", "Japanese"), ("China", "Beijing", "Mandarin"), ("India", "New Delhi", "Hindi"),
        ("Thailand", "Bangkok", "Thai"), ("Vietnam", "Hanoi", "Vietnamese"),
        ("Indonesia", "Jakarta", "Indonesian"), ("Malaysia", "Kuala Lumpur", "Malay"),
        ("Philippines", "Manila", "Filipino"), ("South Korea", "Seoul", "Korean"),
        ("Nepal", "Kathmandu", "Nepali"), ("Mongolia", "Ulaanbaatar", "Mongolian"),
        ("Laos", "Vientiane", "Lao"), ("Cambodia", "Phnom Penh", "Khmer"), ("Bhutan", "Thimphu", "Dzongkha"),
    ),
}
AIRPORTS = {
    "Latin America": (
        ("Sao Paulo", "Brazil", "GRU"), ("Mexico City", "Mexico", "MEX"), ("Bogota", "Colombia", "BOG"),
        ("Lima", "Peru", "LIM"), ("Santiago", "Chile", "SCL"), ("Buenos Aires", "Argentina", "EZE"),
        ("Cancun", "Mexico", "CUN"), ("Panama City", "Panama", "PTY"), ("Brasilia", "Brazil", "BSB"),
        ("Guadalajara", "Mexico", "GDL"), ("Caracas", "Venezuela", "CCS"), ("Quito", "Ecuador", "UIO"),
        ("San Jose", "Costa Rica", "SJO"), ("Monterrey", "Mexico", "MTY"),
    ),
    "Europe": (
        ("London", "United Kingdom", "LHR"), ("Paris", "France", "CDG"), ("Frankfurt", "Germany", "FRA"),
        ("Madrid", "Spain", "MAD"), ("Amsterdam", "Netherlands", "AMS"), ("Rome", "Italy", "FCO"),
        ("Munich", "Germany", "MUC"), ("Barcelona", "Spain", "BCN"), ("Zurich", "Switzerland", "ZRH"),
        ("Vienna", "Austria", "VIE"), ("Copenhagen", "Denmark", "CPH"), ("Dublin", "Ireland", "DUB"),
        ("Oslo", "Norway", "OSL"), ("Brussels", "Belgium", "BRU"),
    ),
    "Asia": (
        ("Tokyo", "Japan", "HND"), ("Beijing", "China", "PEK"), ("Hong Kong", "China", "HKG"),
        ("Singapore", "Singapore", "SIN"), ("Bangkok", "Thailand", "BKK"), ("Seoul", "South Korea", "ICN"),
        ("Kuala Lumpur", "Malaysia", "KUL"), ("Jakarta", "Indonesia", "CGK"),
        ("Manila", "Philippines", "MNL"), ("Shanghai", "China", "PVG"), ("Delhi", "India", "DEL"),
        ("Mumbai", "India", "BOM"), ("Taipei", "Taiwan", "TPE"), ("Osaka", "Japan", "KIX"),
    ),
}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def us_date(d: date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def uk_date(d: date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def short_date(d: date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}"


# ------------------------------------------------------------------------------------------------------------
# Table templates
# ------------------------------------------------------------------------------------------------------------

Row = dict[str, Any]
Ctx = dict[str, Any]
Gen = Callable[[random.Random, Row, int, int, Ctx], Any]


@dataclass(frozen=True)
class Col:
    """One column template: header (may use the table's context, e.g. 'Years in {city}'), type, a cell
    generator and how questions talk about it."""

    header: str
    type: str  # "text" | "real"
    gen: Gen | None  # None: filled in by the domain's finalize
    noun: str | None = None  # how a question names the column (default: the header, lower-cased)
    who: bool = False  # a person: 'Who is the ...'
    measure: bool = False  # SUM/AVG make sense
    required: bool = False  # in every table of the domain
    unique: bool = False
    cond: float = 1.0  # weight as a condition column (0: never)
    eq: float = 1.0  # weight of '=' (real columns also draw '>' and '<' with weight `cmp` each)
    cmp: float = 0.0
    count_noun: str | None = None  # 'players': 'How many players ...'
    with_eq: tuple[str, ...] = ()  # '... with {v} points'
    with_gt: tuple[str, ...] = ()
    with_lt: tuple[str, ...] = ()
    rel_eq: tuple[str, ...] = ()  # '... for the player who played for {v}'
    rel_gt: tuple[str, ...] = ()
    rel_lt: tuple[str, ...] = ()


def text(header: str, gen: Gen | None, **kw: Any) -> Col:
    return Col(header, "text", gen, **kw)


def real(header: str, gen: Gen | None, **kw: Any) -> Col:
    kw.setdefault("eq", 0.4)
    kw.setdefault("cmp", 0.3)
    return Col(header, "real", gen, **kw)


@dataclass(frozen=True)
class Domain:
    name: str
    entity: str
    entities: str
    cols: tuple[Col, ...]
    contexts: tuple[Ctx, ...]
    page: str
    section: str
    caption: str
    rows: tuple[int, int] = (8, 18)
    prepare: Callable[[random.Random, Ctx], None] | None = None
    finalize: Callable[[list[Row], random.Random, Ctx], list[Row]] | None = None


def pick(pool: Any) -> Gen:
    items = tuple(pool)
    return lambda r, row, i, n, c: r.choice(items)


def person(first: tuple[str, ...] = FIRST) -> Gen:
    return lambda r, row, i, n, c: f"{r.choice(first)} {r.choice(LAST)}"


def integer(lo: int, hi: int) -> Gen:
    return lambda r, row, i, n, c: r.randint(lo, hi)


def decimal(lo: float, hi: float, digits: int) -> Gen:
    return lambda r, row, i, n, c: round(r.uniform(lo, hi), digits)


def seq(start: int | str = 1) -> Gen:
    """1, 2, 3, ...; a str start names a context key."""
    return lambda r, row, i, n, c: (c[start] if isinstance(start, str) else start) + i


def span(lo: int, hi: int, short: float = 0.5) -> Gen:
    """Seasons or year ranges: '1995–96', '2001–2004'."""
    def gen(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
        start = r.randint(lo, hi)
        if r.random() < short:
            return f"{start}–{str(start + 1)[2:]}"
        return f"{start}–{start + r.randint(1, 8)}"
    return gen


def pos_points(pos: int) -> int:
    return (10, 6, 4, 3, 2, 1)[pos - 1] if pos <= 6 else 0


# --- finalizers (cross-row coherence) ---

def fin_roster(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    return sorted(rows, key=lambda row: row["Player"].split()[-1] + row["Player"])


def fin_tv(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    d = date(c["year"], 9, r.randint(8, 28))
    for row in rows:
        row["Original air date"] = us_date(d)
        d += timedelta(days=7 * r.choice((1, 1, 1, 1, 2, 3)))
    return rows


def fin_sorted_years(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    return sorted(rows, key=lambda row: row["Year"])


def fin_race(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    n, laps = len(rows), c["laps"]
    retired = r.randint(1, max(1, n // 3))
    grid = list(range(1, n + 1))
    r.shuffle(grid)
    retired_laps = sorted((r.randint(1, laps - 3) for _ in range(retired)), reverse=True)
    leader = f"1:{r.randint(24, 44)}:{r.randint(10, 59)}.{r.randint(100, 999)}"
    for i, row in enumerate(rows):
        pos = i + 1
        row["Pos."], row["Grid"], row["Points"] = pos, grid[i], pos_points(pos)
        if i >= n - retired:
            row["Laps"] = retired_laps[i - (n - retired)]
            row["Time/Retired"] = r.choice(RETIREMENTS)
        elif i == 0:
            row["Laps"], row["Time/Retired"] = laps, leader
        else:
            down = 0 if i < (n - retired) * 0.6 else r.choice((1, 1, 2))
            row["Laps"] = laps - down
            row["Time/Retired"] = (f"+{r.uniform(2, 95):.3f}" if down == 0 else
                                   "+1 Lap" if down == 1 else "+2 Laps")
    # laps must not increase down the order
    for i in range(1, n):
        rows[i]["Laps"] = min(rows[i]["Laps"], rows[i - 1]["Laps"])
    return rows


def fin_buildings(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    rows.sort(key=lambda row: -row["Height (ft)"])
    for i, row in enumerate(rows):
        row["Rank"] = i + 1
        row["Height (m)"] = round(row["Height (ft)"] * 0.3048)
        row["Floors"] = max(10, round(row["Height (ft)"] / r.uniform(12.5, 14.5)))
    return rows


def fin_countries(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    info = {name: (capital, language) for name, capital, language in COUNTRY_INFO[c["region"]]}
    for row in rows:
        row["Capital"], row["Official language"] = info[row["Country"]]
    return sorted(rows, key=lambda row: row["Country"])


def fin_league(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    played = c["played"]
    for row in rows:
        won = r.randint(3, played - 6)
        drawn = r.randint(2, played - won - 2)
        row["Played"], row["Won"], row["Drawn"], row["Lost"] = played, won, drawn, played - won - drawn
        row["Goals for"] = max(10, round(won * 1.9 + drawn * 0.9 + r.randint(0, 12)))
        row["Goals against"] = max(10, round((played - won - drawn) * 1.8 + drawn * 0.9 + r.randint(0, 12)))
        row["Points"] = c["win"] * won + drawn
    rows.sort(key=lambda row: (-row["Points"], row["Goals against"] - row["Goals for"], row["Team"]))
    for i, row in enumerate(rows):
        row["Position"] = i + 1
    return rows


def fin_golf(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    par = c["par"]
    for row in rows:
        rounds = [par + r.randint(-5, 3) for _ in range(4)]
        row["_total"] = sum(rounds)
        row["Score"] = "-".join(str(x) for x in rounds) + f"={sum(rounds)}"
        row["To par"] = sum(rounds) - 4 * par
    rows.sort(key=lambda row: (row["_total"], row["Player"]))
    purse = c["purse"]
    for row in rows:
        tied = sum(1 for other in rows if other["_total"] == row["_total"])
        first = next(j for j, other in enumerate(rows) if other["_total"] == row["_total"]) + 1
        row["Place"] = f"T{first}" if tied > 1 else str(first)
        row["Money ($)"] = round(purse * (0.18 if first == 1 else 0.108 / (first ** 0.8)) / 100) * 100
    return rows


def fin_medals(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    for row in rows:
        row["Gold"], row["Silver"], row["Bronze"] = r.randint(0, 12), r.randint(0, 10), r.randint(1, 11)
        row["Total"] = row["Gold"] + row["Silver"] + row["Bronze"]
    rows.sort(key=lambda row: (-row["Gold"], -row["Silver"], -row["Bronze"], row["Nation"]))
    for i, row in enumerate(rows):
        row["Rank"] = i + 1
    return rows


def fin_nfl(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    d = date(c["year"], 9, r.randint(1, 7))
    wins = losses = 0
    for row in rows:
        home = r.random() < 0.5
        opponent = row["_opp"]
        row["Opponent"] = opponent if home else f"at {opponent}"
        row["Date"] = us_date(d)
        d += timedelta(days=7)
        ours, theirs = r.randint(3, 38), r.randint(0, 35)
        if ours == theirs:
            ours += 3
        won = ours > theirs
        wins, losses = wins + won, losses + (not won)
        row["Result"] = f"{'W' if won else 'L'} {max(ours, theirs)}–{min(ours, theirs)}"
        row["Record"] = f"{wins}–{losses}"
        row["Game site"] = c["stadium"] if home else r.choice(STADIUMS)
    return rows


def fin_nba(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    d = date(c["year"], r.choice((11, 12, 1, 2)), r.randint(1, 9))
    wins, losses = c["wins"], c["losses"]
    roster = [f"{r.choice(FIRST)} {r.choice(LAST)}" for _ in range(5)]
    for row in rows:
        home = r.random() < 0.5
        row["Date"] = short_date(d)
        d += timedelta(days=r.choice((1, 2, 2, 3)))
        ours, theirs = r.randint(80, 122), r.randint(80, 122)
        if ours == theirs:
            ours += 2
        won = ours > theirs
        wins, losses = wins + won, losses + (not won)
        overtime = " (OT)" if r.random() < 0.12 else ""
        row["Score"] = f"{'W' if won else 'L'} {ours}–{theirs}{overtime}"
        row["High points"] = f"{r.choice(roster)} ({r.randint(18, 41)})"
        row["High rebounds"] = f"{r.choice(roster)} ({r.randint(7, 17)})"
        row["Location"] = c["arena"] if home else r.choice(ARENAS)
        row["Record"] = f"{wins}–{losses}"
    return rows


def fin_baseball(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    for row in rows:
        games = r.randint(40, 162)
        at_bats = r.randint(games * 2, games * 4)
        hits = round(at_bats * r.uniform(0.21, 0.33))
        row["G"], row["AB"], row["H"] = games, at_bats, hits
        row["HR"] = r.randint(0, max(1, hits // 5))
        row["RBI"] = row["HR"] + r.randint(5, max(6, hits // 2))
        row["Avg."] = round(hits / at_bats, 3)
    rows.sort(key=lambda row: -row["AB"])
    return rows


def fin_track(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    lanes = list(range(1, len(rows) + 1))
    r.shuffle(lanes)
    base = c["base"]
    for i, row in enumerate(rows):
        row["Lane"] = lanes[i]
        row["Time"] = round(base + r.uniform(0, base * 0.04), 2)
    rows.sort(key=lambda row: row["Time"])
    for i, row in enumerate(rows):
        row["Rank"] = i + 1
    return rows


def fin_ships(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    for row in rows:
        laid = date(c["year"], r.randint(1, 12), r.randint(1, 28))
        launched = laid + timedelta(days=r.randint(150, 400))
        commissioned = launched + timedelta(days=r.randint(120, 420))
        row["Laid down"], row["Launched"], row["Commissioned"] = uk_date(laid), uk_date(launched), uk_date(
            commissioned)
        row["_laid"] = laid
        fate_year = commissioned.year + r.randint(1, 28)
        row["Fate"] = r.choice((f"Scrapped {fate_year}", f"Sold for scrap {fate_year}", f"Sunk {fate_year}",
                                f"Decommissioned {fate_year}", f"Expended as target {fate_year}",
                                "Museum ship"))
    rows.sort(key=lambda row: row["_laid"])
    return rows


def fin_stations(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    distance = 0.0
    for i, row in enumerate(rows):
        row["Distance (km)"] = round(distance, 1)
        row["Fare zone"] = 1 + int(distance // 6)
        distance += r.uniform(0.8, 3.5)
        row["Opened"] = c["opened"] + (0 if i < len(rows) // 2 else r.choice((0, 4, 9, 15)))
    return rows


def fin_airports(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    info = {city: (country, code) for city, country, code in AIRPORTS[c["region"]]}
    for row in rows:
        row["Country"], row["IATA code"] = info[row["City"]]
        row["Airport"] = f"{row['City']} International Airport"
        row["Aircraft movements"] = round(row["Total passengers"] / r.uniform(95, 140))
    rows.sort(key=lambda row: -row["Total passengers"])
    for i, row in enumerate(rows):
        row["Rank"] = i + 1
    return rows


def fin_mountains(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    rows.sort(key=lambda row: -row["Elevation (m)"])
    for i, row in enumerate(rows):
        row["Rank"] = i + 1
        row["Prominence (m)"] = r.randint(60, max(61, row["Elevation (m)"] // 3))
    return rows


def fin_cars(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    for row in rows:
        row["Displacement (cc)"] = DISPLACEMENTS[row["Model"].split()[0]]
        litres = row["Displacement (cc)"] / 1000
        row["Power (hp)"] = round(litres * r.uniform(55, 95))
        row["Torque (N·m)"] = round(row["Power (hp)"] * r.uniform(1.2, 2.3))
        row["0–100 km/h (s)"] = round(max(6.0, 19.0 - row["Power (hp)"] / 20 + r.uniform(-0.8, 0.8)), 1)
        row["Top speed (km/h)"] = round(150 + row["Power (hp)"] * r.uniform(0.35, 0.5))
    rows.sort(key=lambda row: (row["Displacement (cc)"], row["Model"]))
    return rows


def fin_municipalities(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    for row in rows:
        row["Density (/sq mi)"] = round(row["Population (2010)"] / row["Area (sq mi)"], 1)
    return sorted(rows, key=lambda row: row["Municipality"])


def fin_cricket(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    for row in rows:
        matches = r.randint(40, 300)
        innings = max(10, matches - r.randint(0, matches // 6))
        runs = round(innings * r.uniform(22, 48))
        row["Matches"], row["Innings"], row["Runs"] = matches, innings, runs
        row["Average"] = round(runs / max(1, innings - r.randint(2, 30)), 2)
        row["100s"], row["50s"] = r.randint(0, runs // 900), r.randint(1, runs // 300)
        row["Highest score"] = f"{r.randint(101, 194)}{'*' if r.random() < 0.3 else ''}"
    rows.sort(key=lambda row: -row["Runs"])
    for i, row in enumerate(rows):
        row["Rank"] = i + 1
    return rows


def fin_boxing(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    wins = losses = draws = 0
    d = date(c["debut"], r.randint(1, 12), r.randint(1, 28))
    for i, row in enumerate(rows):
        outcome = r.choices(("Win", "Loss", "Draw"), weights=(0.78, 0.17, 0.05))[0]
        wins += outcome == "Win"
        losses += outcome == "Loss"
        draws += outcome == "Draw"
        row["No."] = i + 1
        row["Result"] = outcome
        row["Record"] = f"{wins}–{losses}" + (f"–{draws}" if draws else "")
        kind = r.choice(BOUT_TYPES) if outcome != "Draw" else r.choice(("SD", "MD", "PTS"))
        row["Type"] = kind
        scheduled = r.choice((4, 6, 8, 10, 12))
        row["Round"] = r.randint(1, scheduled) if kind in ("KO", "TKO", "RTD") else scheduled
        row["Date"] = f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}"
        d += timedelta(days=r.randint(40, 200))
    return rows


def fin_contestants(rows: list[Row], r: random.Random, c: Ctx) -> list[Row]:
    for row in rows:
        row["Weight lost (lbs)"] = round(row["Starting weight (lbs)"] * r.uniform(0.08, 0.42))
        row["Percentage lost"] = round(100 * row["Weight lost (lbs)"] / row["Starting weight (lbs)"], 2)
    rows.sort(key=lambda row: -row["Percentage lost"])
    n = len(rows)
    for i, row in enumerate(rows):
        row["Finish"] = ("Winner" if i == 0 else "Runner-up" if i == 1 else
                         f"Eliminated week {n - i + 1}" if i < n - 1 else "Eliminated week 1")
    return rows


def prep_roster(r: random.Random, c: Ctx) -> None:
    letters = sorted({name[0] for name in LAST if sum(1 for x in LAST if x[0] == name[0]) >= 6})
    c["letter"] = r.choice(letters)


def prep_draft(r: random.Random, c: Ctx) -> None:
    c["first_pick"] = (c["round"] - 1) * r.choice((21, 24, 26)) + 1


def prep_tv(r: random.Random, c: Ctx) -> None:
    c["code"] = f"{c['season']}{r.choice('ABTVX')}{r.randint(1, 9)}"


def roster_player(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    lasts = tuple(x for x in LAST if x[0] == c["letter"])
    return f"{r.choice(FIRST)} {r.choice(lasts)}"


def candidates(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    party = row["Party"][0]
    other = "R" if party == "D" else "D"
    share = row["Vote share (%)"]
    challenger = f"{r.choice(EVERYONE)} {r.choice(LAST)}"
    return (f"{row['Incumbent']} ({party}) {format_number(share)}% {challenger} ({other}) "
            f"{format_number(round(100 - share, 1))}%")


def election_result(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    party = row["Party"]
    other = "Republican" if party == "Democratic" else "Democratic"
    return r.choices(("Re-elected", f"Retired {party} hold", f"Lost re-election {other} gain",
                      f"Retired to run for U.S. Senate {party} hold"), weights=(0.7, 0.12, 0.1, 0.08))[0]


def writers(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    if r.random() < 0.3:
        return f"{r.choice(EVERYONE)} {r.choice(LAST)} & {r.choice(EVERYONE)} {r.choice(LAST)}"
    return f"{r.choice(EVERYONE)} {r.choice(LAST)}"


def film_role(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    title = r.choice(("", "", "", "Dr. ", "Detective ", "Agent ", "Captain ", "Sergeant "))
    return f"{title}{r.choice(EVERYONE)} {r.choice(LAST)}"


def tennis_score(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    options = ("6–4", "6–3", "7–5", "7–6", "6–2", "4–6", "3–6", "6–7", "6–1")
    sets = [r.choice(options) for _ in range(r.choice((2, 3)))]
    return ", ".join(sets)


DISPLACEMENTS = {"1.4": 1390, "1.6": 1598, "1.8": 1796, "2.0": 1998, "2.2": 2198, "2.5": 2495, "3.0": 2968}


def car_model(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    suffix = r.choice(("16V", "Turbo", "TDI", "CDTi", "GSi", "V6", "SRi"))
    return f"{r.choice(sorted(DISPLACEMENTS))} {suffix}"


def call_sign(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    return c["prefix"] + "".join(r.choice("ABCDEFGHJKLMNPRSTVWXYZ") for _ in range(3))


def peak_name(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    word = r.choice(PEAK_WORDS + LAST[:40])
    return r.choice((f"Mount {word}", f"{word} Peak", f"{word} Mountain", f"{word} Spire"))


def school_name(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    town = r.choice(TOWNS)
    row["_town"] = town
    return r.choice((f"{town} High School", f"{town} High School", f"{town} Central", f"{town} North",
                     f"{town} Community"))


def institution(r: random.Random, row: Row, i: int, n: int, c: Ctx) -> str:
    town = r.choice(TOWNS)
    row["_town"] = town
    return r.choice((f"{town} State University", f"University of {town}", f"{town} College"))


# --- the domains ---

NUMBER_WITH = dict(with_eq=("number {v}",), rel_eq=("who wore number {v}", "wearing number {v}"))

DOMAINS: tuple[Domain, ...] = (
    Domain(
        "nba_roster", "player", "players",
        (text("Player", roster_player, who=True, required=True, unique=True, count_noun="players"),
         real("No.", integer(0, 55), noun="no.", required=True, eq=0.7, cmp=0.15, **NUMBER_WITH),
         text("Nationality", pick(NATIONS), rel_eq=("from {v}", "whose nationality is {v}")),
         text("Position", pick(NBA_POSITIONS), rel_eq=("who played {v}", "playing {v}")),
         text("Years in {city}", span(1995, 2012), noun="years in {city}", required=True,
              rel_eq=("who played in {city} in {v}", "who was in {city} during {v}")),
         text("School/Club Team", pick(COLLEGES), noun="school/club team", required=True,
              rel_eq=("who played for {v}", "from school/club team {v}")),
         real("Height (m)", decimal(1.80, 2.26, 2), noun="height (m)", measure=True,
              rel_gt=("taller than {v} m",), rel_lt=("shorter than {v} m",)),
         real("Games played", integer(2, 520), measure=True,
              with_eq=("{v} games played",), with_gt=("more than {v} games played",),
              with_lt=("fewer than {v} games played",), rel_gt=("who played more than {v} games",),
              rel_lt=("who played fewer than {v} games",))),
        ({"team": "Toronto Raptors", "city": "Toronto"}, {"team": "Memphis Grizzlies", "city": "Memphis"},
         {"team": "Orlando Magic", "city": "Orlando"}),
        "{team} all-time roster", "{letter}", "{letter}", rows=(6, 16), prepare=prep_roster,
        finalize=fin_roster),
    Domain(
        "nhl_draft", "player", "players",
        (real("Pick #", seq("first_pick"), noun="pick #", required=True, eq=0.6, cmp=0.2,
              with_eq=("pick # {v}",), rel_eq=("taken with pick # {v}", "picked at number {v}")),
         text("Player", person(), who=True, required=True, unique=True, count_noun="players"),
         text("Position", pick(HOCKEY_POSITIONS), rel_eq=("who plays {v}", "drafted as a {v}")),
         text("Nationality", pick(HOCKEY_NATIONS), rel_eq=("from {v}",)),
         text("NHL team", pick(NHL_TEAMS), noun="NHL team",
              rel_eq=("drafted by the {v}", "picked by the {v}")),
         text("College/junior/club team", pick(JUNIOR_TEAMS), noun="college/junior/club team",
              rel_eq=("who came from the {v}", "from {v}")),
         real("Career GP", integer(0, 1250), noun="career GP", measure=True,
              with_gt=("more than {v} career games",), with_lt=("fewer than {v} career games",))),
        ({"year": 1984, "round": 2}, {"year": 1991, "round": 3}, {"year": 1997, "round": 5},
         {"year": 2003, "round": 7}),
        "{year} NHL Entry Draft", "Round {round}", "Round {round}", rows=(10, 24), prepare=prep_draft),
    Domain(
        "tv_episodes", "episode", "episodes",
        (real("No. in series", seq("start"), noun="no. in series", required=True, eq=0.6, cmp=0.2,
              rel_eq=("numbered {v} in the series",)),
         real("No. in season", seq(1), noun="no. in season", eq=0.6, cmp=0.2, with_eq=("no. in season {v}",)),
         text("Title", pick(EP_TITLES), required=True, unique=True, count_noun="episodes",
              rel_eq=("titled {v}", "called {v}")),
         text("Directed by", person(EVERYONE), noun="director", who=True, rel_eq=("directed by {v}",)),
         text("Written by", writers, noun="writer", who=True, rel_eq=("written by {v}",)),
         text("Original air date", None, noun="original air date",
              rel_eq=("that aired on {v}", "first broadcast on {v}")),
         text("Production code", lambda r, row, i, n, c: f"{c['code']}{i + 1:02d}", noun="production code"),
         real("U.S. viewers (millions)", decimal(3.5, 21.0, 2), noun="U.S. viewers (millions)", measure=True,
              required=True, with_eq=("{v} million U.S. viewers",),
              with_gt=("more than {v} million U.S. viewers",),
              with_lt=("fewer than {v} million U.S. viewers",),
              rel_eq=("watched by {v} million U.S. viewers",),
              rel_gt=("watched by more than {v} million U.S. viewers",),
              rel_lt=("watched by fewer than {v} million U.S. viewers",))),
        ({"show": "Harbor Street", "season": 2, "start": 23, "year": 2006},
         {"show": "Night Desk", "season": 4, "start": 61, "year": 2009},
         {"show": "The Arbor Files", "season": 3, "start": 45, "year": 2001},
         {"show": "County General", "season": 6, "start": 111, "year": 1999}),
        "List of {show} episodes", "Season {season}", "{show} season {season}", rows=(8, 24), prepare=prep_tv,
        finalize=fin_tv),
    Domain(
        "house_elections", "incumbent", "incumbents",
        (text("District", lambda r, row, i, n, c: f"{c['state']} {i + 1}", required=True, unique=True,
              rel_eq=("representing {v}", "in {v}")),
         text("Incumbent", person(EVERYONE), who=True, unique=True, required=True, count_noun="incumbents"),
         text("Party", pick(("Democratic", "Republican")), rel_eq=("from the {v} party",)),
         real("First elected", integer(1958, 1990), eq=0.5, cmp=0.25, rel_eq=("first elected in {v}",),
              rel_gt=("first elected after {v}",), rel_lt=("first elected before {v}",)),
         real("Vote share (%)", decimal(50.5, 88.0, 1), noun="vote share (%)", measure=True),
         text("Result", election_result),
         text("Candidates", candidates, cond=0.3)),
        ({"year": 1992, "state": "Ohio"}, {"year": 1996, "state": "Texas"},
         {"year": 2000, "state": "California"}, {"year": 1988, "state": "Pennsylvania"}),
        "United States House of Representatives elections, {year}", "{state}", "{state}", rows=(6, 20)),
    Domain(
        "filmography", "film", "films",
        (real("Year", integer(1988, 2014), required=True, eq=0.5, cmp=0.25, rel_eq=("released in {v}",),
              rel_gt=("released after {v}",), rel_lt=("released before {v}",)),
         text("Title", pick(FILM_TITLES), required=True, unique=True, count_noun="films",
              rel_eq=("titled {v}", "called {v}")),
         text("Role", film_role, rel_eq=("where the role was {v}",)),
         text("Director", person(EVERYONE), who=True, rel_eq=("directed by {v}",)),
         text("Studio", pick(STUDIOS), rel_eq=("released by {v}",)),
         real("Box office (US$ millions)", decimal(0.4, 420.0, 1), noun="box office (US$ millions)",
              measure=True, required=True, rel_gt=("that grossed more than {v} million",),
              rel_lt=("that grossed less than {v} million",)),
         text("Notes", pick(FILM_NOTES))),
        ({"actor": "Dana Whitfield"}, {"actor": "Marcus Hale"}, {"actor": "Irene Castell"},
         {"actor": "Owen Bradley"}),
        "{actor}", "Filmography", "Film", rows=(6, 20), finalize=fin_sorted_years),
    Domain(
        "albums", "album", "albums",
        (real("Year", integer(1990, 2015), required=True, eq=0.5, cmp=0.25, rel_eq=("released in {v}",),
              rel_gt=("released after {v}",), rel_lt=("released before {v}",)),
         text("Album", pick(ALBUM_TITLES), required=True, unique=True, count_noun="albums",
              rel_eq=("titled {v}", "called {v}")),
         text("Label", pick(RECORD_LABELS), rel_eq=("released on {v}",)),
         real("Peak position (US)", integer(1, 150), noun="US peak position", cmp=0.3),
         real("Peak position (UK)", integer(1, 120), noun="UK peak position", cmp=0.3),
         text("Certification", pick(CERTIFICATIONS), rel_eq=("certified {v}",)),
         real("Sales (millions)", decimal(0.1, 9.5, 2), noun="sales (millions)", measure=True,
              with_gt=("sales of more than {v} million",), with_lt=("sales of less than {v} million",))),
        ({"artist": "Velvet Harbor"}, {"artist": "The Northern Lights"}, {"artist": "Sister Ruby"},
         {"artist": "Cold Meridian"}),
        "{artist} discography", "Studio albums", "Studio albums", rows=(5, 14), finalize=fin_sorted_years),
    Domain(
        "f1_race", "driver", "drivers",
        (real("Pos.", None, noun="position", required=True, eq=0.6, cmp=0.2, with_eq=("position {v}",),
              rel_eq=("who finished in position {v}",)),
         real("No.", integer(1, 40), noun="number", unique=True, eq=0.6, cmp=0.2, **NUMBER_WITH),
         text("Driver", person(), who=True, required=True, unique=True, count_noun="drivers"),
         text("Constructor", pick(CONSTRUCTORS), rel_eq=("driving for {v}", "who drove a {v}")),
         real("Laps", None, measure=True, with_eq=("{v} laps",), with_gt=("more than {v} laps",),
              with_lt=("fewer than {v} laps",), rel_gt=("who completed more than {v} laps",)),
         text("Time/Retired", None, noun="time/retired"),
         real("Grid", None, eq=0.6, cmp=0.2, rel_eq=("who started on grid {v}",),
              rel_gt=("who started behind grid {v}",)),
         real("Points", None, measure=True, with_eq=("{v} points",), with_gt=("more than {v} points",),
              with_lt=("fewer than {v} points",))),
        ({"race": "1994 Portuguese Grand Prix", "laps": 71},
         {"race": "1997 Hungarian Grand Prix", "laps": 77},
         {"race": "1999 Belgian Grand Prix", "laps": 44},
         {"race": "1992 Canadian Grand Prix", "laps": 69}),
        "{race}", "Classification", "Race", rows=(10, 22), finalize=fin_race),
    Domain(
        "buildings", "building", "buildings",
        (real("Rank", None, required=True, eq=0.6, cmp=0.2, with_eq=("rank {v}",), rel_eq=("ranked {v}",)),
         text("Name", lambda r, row, i, n, c: f"{r.choice(BUILDING_FIRST)} {r.choice(BUILDING_LAST)}",
              noun="name", required=True, unique=True, count_noun="buildings",
              rel_eq=("named {v}", "called {v}")),
         real("Height (ft)", integer(280, 1450), noun="height (ft)", measure=True, required=True,
              rel_gt=("taller than {v} ft",), rel_lt=("shorter than {v} ft",)),
         real("Height (m)", None, noun="height (m)", measure=True),
         real("Floors", None, measure=True, with_eq=("{v} floors",), with_gt=("more than {v} floors",),
              with_lt=("fewer than {v} floors",)),
         real("Year", integer(1928, 2012), noun="year completed", rel_eq=("completed in {v}",),
              rel_gt=("completed after {v}",), rel_lt=("completed before {v}",)),
         text("Street address", lambda r, row, i, n, c: f"{r.randint(1, 1999)} {r.choice(STREETS)}",
              noun="street address", rel_eq=("located at {v}",))),
        ({"city": "Houston"}, {"city": "Seattle"}, {"city": "Atlanta"}, {"city": "Denver"}),
        "List of tallest buildings in {city}", "Tallest buildings", "Tallest buildings", rows=(8, 25),
        finalize=fin_buildings),
    Domain(
        "countries", "country", "countries",
        (text("Country", lambda r, row, i, n, c: r.choice(COUNTRY_INFO[c["region"]])[0], required=True,
              unique=True, count_noun="countries"),
         text("Capital", None, rel_eq=("whose capital is {v}", "with the capital {v}")),
         text("Official language", None, noun="official language",
              rel_eq=("where {v} is the official language",)),
         real("Area (km²)", integer(2000, 2500000), noun="area (km²)", measure=True, required=True),
         real("Population (2010 est.)", integer(300000, 180000000), noun="population (2010 est.)",
              measure=True),
         real("GDP per capita (US$)", integer(400, 52000), noun="GDP per capita (US$)", measure=True),
         real("HDI", decimal(0.30, 0.95, 3), noun="HDI", measure=True)),
        ({"region": "Africa"}, {"region": "Europe"}, {"region": "South America"}, {"region": "Asia"}),
        "{region}", "Countries", "Sovereign states of {region}", rows=(6, 12), finalize=fin_countries),
    Domain(
        "high_schools", "school", "schools",
        (text("School", school_name, required=True, unique=True, count_noun="schools", rel_eq=("named {v}",)),
         text("Mascot", pick(MASCOTS), rel_eq=("whose mascot is the {v}", "with the {v} as mascot")),
         text("Location", lambda r, row, i, n, c: row["_town"], rel_eq=("located in {v}",)),
         real("Enrollment", integer(250, 2400), measure=True, required=True,
              with_gt=("more than {v} students",), with_lt=("fewer than {v} students",)),
         text("IHSAA Class", pick(("A", "AA", "AAA", "AAAA")), noun="IHSAA class"),
         text("# / County", lambda r, row, i, n, c: f"{r.randint(1, 92):02d} {r.choice(COUNTIES)}",
              noun="# / county", rel_eq=("in county {v}",)),
         real("Year Joined", integer(1950, 2010), noun="year joined", rel_eq=("that joined in {v}",),
              rel_gt=("that joined after {v}",), rel_lt=("that joined before {v}",))),
        ({"conf": "Hoosier Heritage Conference"}, {"conf": "Sagamore Conference"},
         {"conf": "Mid-Eastern Conference"}, {"conf": "Northeast Corner Conference"}),
        "{conf}", "Member schools", "Member schools", rows=(5, 14)),
    Domain(
        "league_table", "team", "teams",
        (real("Position", None, required=True, eq=0.6, cmp=0.2, rel_eq=("that finished in position {v}",)),
         text("Team", pick(FOOTBALL_CLUBS), required=True, unique=True, count_noun="teams"),
         real("Played", None, cond=0),
         real("Won", None, measure=True, with_eq=("{v} wins",), with_gt=("more than {v} wins",),
              with_lt=("fewer than {v} wins",)),
         real("Drawn", None, measure=True, with_eq=("{v} draws",), with_gt=("more than {v} draws",),
              with_lt=("fewer than {v} draws",)),
         real("Lost", None, measure=True, with_eq=("{v} losses",), with_gt=("more than {v} losses",),
              with_lt=("fewer than {v} losses",)),
         real("Goals for", None, noun="goals for", measure=True),
         real("Goals against", None, noun="goals against", measure=True),
         real("Points", None, measure=True, required=True, with_eq=("{v} points",),
              with_gt=("more than {v} points",), with_lt=("fewer than {v} points",))),
        ({"season": "1996–97", "league": "Segunda Division B Group 1", "played": 38, "win": 3},
         {"season": "1993–94", "league": "Tercera Division Group 5", "played": 34, "win": 2},
         {"season": "2001–02", "league": "Segunda Division B Group 4", "played": 38, "win": 3},
         {"season": "1989–90", "league": "Regional Preferente", "played": 30, "win": 2}),
        "{season} {league}", "League table", "Final table", rows=(10, 20), finalize=fin_league),
    Domain(
        "tennis_finals", "final", "finals",
        (text("Outcome", pick(("Winner", "Runner-up", "Winner")), count_noun="finals"),
         real("Year", integer(1995, 2012), required=True, eq=0.6, cmp=0.2, rel_eq=("played in {v}",)),
         text("Championship", pick(sorted(TOURNAMENTS)), required=True, rel_eq=("at {v}",)),
         text("Surface", lambda r, row, i, n, c: TOURNAMENTS[row["Championship"]], rel_eq=("played on {v}",)),
         text("Opponent in the final", person(), noun="opponent in the final", who=True,
              rel_eq=("against {v}",)),
         text("Score in the final", tennis_score, noun="score in the final", cond=0.5),
         real("Prize money (US$)", integer(20000, 900000), noun="prize money (US$)", measure=True)),
        ({"player": "Elena Markovic"}, {"player": "Tomas Berglund"}, {"player": "Sofia Lindqvist"},
         {"player": "Andre Castillo"}),
        "{player}", "Singles finals", "Singles: finals", rows=(5, 16), finalize=fin_sorted_years),
    Domain(
        "golf", "player", "players",
        (text("Place", None, cond=0.6),
         text("Player", person(), who=True, required=True, unique=True, count_noun="players"),
         text("Country", pick(GOLF_NATIONS), rel_eq=("from {v}",)),
         text("Score", None, cond=0.5),
         real("To par", None, noun="to par", eq=0.5, cmp=0.25),
         real("Money ($)", None, noun="money ($)", measure=True, required=True,
              rel_gt=("who won more than ${v}",), rel_lt=("who won less than ${v}",))),
        ({"event": "1999 Masters Tournament", "par": 72, "purse": 3200000},
         {"event": "2002 U.S. Open", "par": 70, "purse": 5500000},
         {"event": "1995 PGA Championship", "par": 71, "purse": 2000000},
         {"event": "2004 Open Championship", "par": 72, "purse": 4000000}),
        "{event}", "Final round", "Final leaderboard", rows=(8, 16), finalize=fin_golf),
    Domain(
        "medal_table", "nation", "nations",
        (real("Rank", None, required=True, eq=0.6, cmp=0.2, rel_eq=("ranked {v}",)),
         text("Nation", pick(ATHLETICS_NATIONS + CRICKET_TEAMS[3:]), required=True, unique=True,
              count_noun="nations"),
         real("Gold", None, measure=True, required=True, with_eq=("{v} gold medals",),
              with_gt=("more than {v} gold medals",), with_lt=("fewer than {v} gold medals",)),
         real("Silver", None, measure=True, with_eq=("{v} silver medals",),
              with_gt=("more than {v} silver medals",), with_lt=("fewer than {v} silver medals",)),
         real("Bronze", None, measure=True, with_eq=("{v} bronze medals",),
              with_gt=("more than {v} bronze medals",), with_lt=("fewer than {v} bronze medals",)),
         real("Total", None, measure=True, required=True, with_gt=("a total of more than {v}",),
              with_lt=("a total of less than {v}",))),
        ({"games": "Athletics at the 1995 Pan American Games"}, {"games": "Swimming at the 2003 Universiade"},
         {"games": "Judo at the 2007 Asian Games"}, {"games": "Rowing at the 1998 Commonwealth Games"}),
        "{games}", "Medal table", "Medal summary", rows=(6, 15), finalize=fin_medals),
    Domain(
        "nfl_schedule", "game", "games",
        (real("Week", seq(1), required=True, eq=0.6, cmp=0.2, with_eq=("week {v}",), rel_eq=("in week {v}",),
              rel_gt=("after week {v}",), rel_lt=("before week {v}",)),
         text("Date", None, rel_eq=("played on {v}",)),
         text("Opponent", None, required=True, rel_eq=("against {v}", "played against the {v}")),
         text("_opp", pick(NFL_TEAMS), unique=True, cond=0),  # helper, never a column (see build_table)
         text("Result", None, cond=0.6),
         text("Game site", None, noun="game site", rel_eq=("played at {v}",)),
         real("Attendance", integer(38000, 79000), measure=True, required=True),
         text("Record", None, cond=0.6)),
        ({"team": "Buffalo Bills", "year": 1997, "stadium": "Rich Stadium"},
         {"team": "Denver Broncos", "year": 1993, "stadium": "Mile High Stadium"},
         {"team": "Seattle Seahawks", "year": 1991, "stadium": "Kingdome"},
         {"team": "Kansas City Chiefs", "year": 1989, "stadium": "Arrowhead Stadium"}),
        "{year} {team} season", "Schedule", "Regular season", rows=(8, 16), finalize=fin_nfl),
    Domain(
        "nba_game_log", "game", "games",
        (real("Game", seq("first_game"), required=True, eq=0.6, cmp=0.2, with_eq=("game {v}",),
              rel_eq=("numbered {v}",)),
         text("Date", None, rel_eq=("played on {v}",)),
         text("Team", pick(NBA_CITIES), unique=True, required=True, rel_eq=("against {v}",)),
         text("Score", None, cond=0.5),
         text("High points", None, noun="high points"),
         text("High rebounds", None, noun="high rebounds"),
         text("Location", None, rel_eq=("played at {v}",)),
         real("Attendance", integer(11000, 21500), measure=True, required=True),
         text("Record", None, cond=0.6)),
        ({"team": "Toronto Raptors", "season": "2008–09", "year": 2008, "arena": "Air Canada Centre",
          "first_game": 21, "wins": 9, "losses": 11},
         {"team": "Sacramento Kings", "season": "2003–04", "year": 2003, "arena": "ARCO Arena",
          "first_game": 33, "wins": 20, "losses": 12},
         {"team": "New Jersey Nets", "season": "2006–07", "year": 2006, "arena": "Continental Airlines Arena",
          "first_game": 47, "wins": 21, "losses": 25},
         {"team": "Milwaukee Bucks", "season": "2001–02", "year": 2001, "arena": "Bradley Center",
          "first_game": 5, "wins": 2, "losses": 2}),
        "{season} {team} season", "Game log", "Game log", rows=(6, 15), finalize=fin_nba),
    Domain(
        "baseball_batting", "player", "players",
        (text("Player", person(), who=True, required=True, unique=True, count_noun="players"),
         text("Pos.", pick(MLB_POSITIONS), noun="position", rel_eq=("who plays {v}",)),
         real("G", None, noun="games (G)", measure=True),
         real("AB", None, noun="at bats (AB)", measure=True, required=True),
         real("H", None, noun="hits (H)", measure=True),
         real("HR", None, noun="home runs (HR)", measure=True, with_eq=("{v} home runs",),
              with_gt=("more than {v} home runs",), with_lt=("fewer than {v} home runs",)),
         real("RBI", None, noun="RBI", measure=True),
         real("Avg.", None, noun="batting average", measure=True, eq=0.3, cmp=0.35)),
        ({"team": "Kansas City Royals", "year": 1985}, {"team": "Montreal Expos", "year": 1994},
         {"team": "Cleveland Indians", "year": 1997}, {"team": "Oakland Athletics", "year": 1989}),
        "{year} {team} season", "Batting", "Batting statistics", rows=(8, 16), finalize=fin_baseball),
    Domain(
        "track_final", "athlete", "athletes",
        (real("Rank", None, required=True, eq=0.6, cmp=0.2, rel_eq=("who finished {v}",)),
         real("Lane", None, eq=0.6, cmp=0.2, with_eq=("lane {v}",), rel_eq=("in lane {v}",)),
         text("Athlete", person(), who=True, required=True, unique=True, count_noun="athletes"),
         text("Nationality", pick(ATHLETICS_NATIONS), rel_eq=("from {v}",)),
         real("Time", None, measure=True, required=True, eq=0.2, cmp=0.4),
         real("Reaction", decimal(0.120, 0.240, 3), noun="reaction time", measure=True, eq=0.2, cmp=0.4),
         text("Notes", pick(("PB", "SB", "NR", "AR", "WL")), rel_eq=("with a note of {v}",))),
        ({"event": "Athletics at the 2007 Pan American Games – Men's 400 metres", "base": 44.5},
         {"event": "2005 World Championships in Athletics – Women's 200 metres", "base": 22.1},
         {"event": "Athletics at the 2002 Commonwealth Games – Men's 400 metres hurdles", "base": 48.1},
         {"event": "1999 World Championships in Athletics – Men's 100 metres", "base": 9.85}),
        "{event}", "Final", "Final", rows=(6, 9), finalize=fin_track),
    Domain(
        "destroyers", "ship", "ships",
        (text("Ship", lambda r, row, i, n, c: f"{c['prefix']} {r.choice(SHIP_WORDS)}", required=True,
              unique=True, count_noun="ships", rel_eq=("named {v}",)),
         text("Pennant number", lambda r, row, i, n, c: f"{c['flag']}{r.randint(10, 99)}", unique=True,
              noun="pennant number", rel_eq=("with pennant number {v}",)),
         text("Builder", pick(SHIPBUILDERS), rel_eq=("built by {v}",)),
         text("Laid down", None, noun="laid down date", rel_eq=("laid down on {v}",)),
         text("Launched", None, noun="launch date", rel_eq=("launched on {v}",)),
         text("Commissioned", None, noun="commission date", rel_eq=("commissioned on {v}",)),
         real("Displacement (tons)", integer(1350, 2700), noun="displacement (tons)", measure=True,
              required=True),
         text("Fate", None)),
        ({"cls": "Tribal", "prefix": "HMS", "flag": "F", "year": 1936},
         {"cls": "Restigouche", "prefix": "HMCS", "flag": "DDE", "year": 1953},
         {"cls": "Battle", "prefix": "HMS", "flag": "D", "year": 1942},
         {"cls": "Fletcher", "prefix": "USS", "flag": "DD-", "year": 1941}),
        "{cls}-class destroyer", "Ships", "Ships in class", rows=(5, 14), finalize=fin_ships),
    Domain(
        "stations", "station", "stations",
        (text("Station", pick(STATIONS), required=True, unique=True, count_noun="stations"),
         real("Distance (km)", None, noun="distance (km)", required=True, eq=0.3, cmp=0.35),
         real("Opened", None, noun="year opened", rel_eq=("opened in {v}",), rel_gt=("opened after {v}",),
              rel_lt=("opened before {v}",)),
         real("Platforms", integer(1, 4), measure=True, with_eq=("{v} platforms",),
              with_gt=("more than {v} platforms",)),
         real("Fare zone", None, noun="fare zone", with_eq=("fare zone {v}",), rel_eq=("in fare zone {v}",)),
         text("Municipality", pick(MUNICIPALITIES), rel_eq=("located in {v}",)),
         text("Connections", pick(("Bus 12, 45", "Tram 3", "None", "Commuter rail", "Bus 7", "Bus 21",
                                   "Intercity rail", "Ferry")), rel_eq=("with connections to {v}",))),
        ({"line": "Harbourside Line", "opened": 1967}, {"line": "Northern Valley Line", "opened": 1985},
         {"line": "Crosstown Line", "opened": 1974}, {"line": "Airport Express Line", "opened": 1998}),
        "{line}", "Stations", "List of stations", rows=(8, 20), finalize=fin_stations),
    Domain(
        "airports", "airport", "airports",
        (real("Rank", None, required=True, eq=0.6, cmp=0.2, rel_eq=("ranked {v}",)),
         text("Airport", None, required=True, count_noun="airports"),
         text("City", lambda r, row, i, n, c: r.choice(AIRPORTS[c["region"]])[0], unique=True,
              rel_eq=("in {v}", "serving {v}")),
         text("Country", None, rel_eq=("located in {v}",)),
         text("IATA code", None, noun="IATA code", rel_eq=("with code {v}",)),
         real("Total passengers", integer(2500000, 68000000), noun="total passengers", measure=True,
              required=True, with_gt=("more than {v} passengers",), with_lt=("fewer than {v} passengers",)),
         real("% Change", decimal(-12.0, 18.0, 1), noun="% change"),
         real("Aircraft movements", None, noun="aircraft movements", measure=True)),
        ({"region": "Latin America", "year": 2010}, {"region": "Europe", "year": 2008},
         {"region": "Asia", "year": 2011}),
        "List of the busiest airports in {region}", "{year}", "Busiest airports in {year}", rows=(6, 14),
        finalize=fin_airports),
    Domain(
        "video_games", "game", "games",
        (text("Title", pick(GAME_TITLES), required=True, unique=True, count_noun="games",
              rel_eq=("titled {v}", "called {v}")),
         real("Year", integer(1999, 2012), eq=0.5, cmp=0.25, rel_eq=("released in {v}",),
              rel_gt=("released after {v}",), rel_lt=("released before {v}",)),
         text("Developer", pick(DEVELOPERS), rel_eq=("developed by {v}",)),
         text("Platform", pick(PLATFORMS), rel_eq=("on {v}", "released for {v}")),
         text("Genre", pick(GENRES), rel_eq=("in the {v} genre",)),
         real("Metacritic", integer(41, 94), noun="Metacritic score", required=True),
         real("Units sold (millions)", decimal(0.05, 6.5, 2), noun="units sold (millions)", measure=True)),
        ({"pub": "Crimson Forge Games"}, {"pub": "Halcyon Interactive"}, {"pub": "Bluebird Software"},
         {"pub": "Meteor Entertainment"}),
        "List of {pub} games", "Published titles", "Games", rows=(6, 20), finalize=fin_sorted_years),
    Domain(
        "awards", "nomination", "nominations",
        (real("Year", integer(1998, 2013), required=True, eq=0.6, cmp=0.2, rel_eq=("in {v}",),
              rel_gt=("after {v}",), rel_lt=("before {v}",)),
         text("Award", pick(AWARDS), required=True, rel_eq=("at the {v}",)),
         text("Category", pick(AWARD_CATEGORIES), rel_eq=("in the category {v}",)),
         text("Nominated work", pick(SONG_TITLES + ALBUM_TITLES[:10]), noun="nominated work",
              rel_eq=("for {v}",)),
         text("Result", pick(("Won", "Nominated", "Nominated")), count_noun="nominations")),
        ({"artist": "Velvet Harbor"}, {"artist": "Jade Monroe"}, {"artist": "The Kestrels"},
         {"artist": "Leo Santana"}),
        "List of awards and nominations received by {artist}", "Awards", "Awards and nominations",
        rows=(6, 18), finalize=fin_sorted_years),
    Domain(
        "mountains", "peak", "peaks",
        (real("Rank", None, required=True, eq=0.6, cmp=0.2),
         text("Peak", peak_name, required=True, unique=True, count_noun="peaks"),
         real("Elevation (m)", integer(1200, 6700), noun="elevation (m)", measure=True, required=True),
         real("Prominence (m)", None, noun="prominence (m)", measure=True),
         real("Isolation (km)", decimal(0.5, 140.0, 1), noun="isolation (km)", measure=True),
         text("Range", lambda r, row, i, n, c: r.choice(RANGES[c["region"]]), rel_eq=("in the {v}",)),
         real("First ascent", integer(1786, 1965), noun="first ascent", rel_eq=("first climbed in {v}",),
              rel_lt=("first climbed before {v}",))),
        ({"region": "Colorado"}, {"region": "the Alps"}, {"region": "Alaska"}, {"region": "the Andes"}),
        "List of mountain peaks of {region}", "Highest peaks", "Highest peaks", rows=(8, 22),
        finalize=fin_mountains),
    Domain(
        "universities", "institution", "institutions",
        (text("Institution", institution, required=True, unique=True, count_noun="institutions"),
         text("Location", lambda r, row, i, n, c: f"{row['_town']}, {r.choice(STATES)}",
              rel_eq=("located in {v}",)),
         real("Founded", integer(1817, 1965), rel_eq=("founded in {v}",), rel_gt=("founded after {v}",),
              rel_lt=("founded before {v}",)),
         text("Type", pick(("Public", "Private")), rel_eq=("that is {v}",)),
         real("Enrollment", integer(1100, 42000), measure=True, required=True,
              with_gt=("more than {v} students",), with_lt=("fewer than {v} students",)),
         text("Nickname", pick(UNI_NICKNAMES), rel_eq=("nicknamed the {v}",)),
         real("Joined", integer(1960, 2011), noun="year joined", rel_eq=("that joined in {v}",))),
        ({"conf": "Great Lakes Intercollegiate Athletic Conference"}, {"conf": "Big Sky Conference"},
         {"conf": "Mid-America Intercollegiate Athletics Association"}, {"conf": "Frontier Conference"}),
        "{conf}", "Member schools", "Current members", rows=(6, 16)),
    Domain(
        "car_engines", "model", "models",
        (text("Model", car_model, required=True, unique=True, count_noun="models"),
         text("Years", span(1994, 2006, short=0.0), rel_eq=("produced {v}",)),
         text("Engine", pick(("I4 SOHC", "I4 DOHC", "I4 turbodiesel", "V6 DOHC", "I4 DOHC turbo")),
              rel_eq=("with an {v} engine",)),
         real("Displacement (cc)", None, noun="displacement (cc)",
              required=True, eq=0.6, cmp=0.2),
         real("Power (hp)", None, noun="power (hp)", measure=True, required=True),
         real("Torque (N·m)", None, noun="torque (N·m)", measure=True),
         real("0–100 km/h (s)", None, noun="0–100 km/h time (s)", measure=True),
         real("Top speed (km/h)", None, noun="top speed (km/h)", measure=True)),
        ({"car": "Opel Astra G"}, {"car": "Ford Mondeo Mk III"}, {"car": "Renault Laguna II"},
         {"car": "Volkswagen Golf IV"}),
        "{car}", "Engines", "Engine specifications", rows=(5, 12), finalize=fin_cars),
    Domain(
        "radio_stations", "station", "stations",
        (text("Call sign", call_sign, noun="call sign", required=True, unique=True, count_noun="stations",
              rel_eq=("with call sign {v}",)),
         real("Frequency MHz", lambda r, row, i, n, c: round(88.1 + 0.2 * r.randint(0, 99), 1),
              noun="frequency MHz", unique=True, eq=0.6, cmp=0.2, rel_eq=("broadcasting on {v} MHz",)),
         text("City of license", pick(TOWNS), noun="city of license", rel_eq=("licensed to {v}",)),
         real("ERP W", pick((100, 250, 1000, 3000, 6000, 25000, 50000, 100000)), noun="ERP W", measure=True),
         text("Class", pick(("A", "B", "C", "C1", "C2", "C3", "D"))),
         text("Format", pick(FORMATS), rel_eq=("with a {v} format", "that plays {v}")),
         text("Owner", pick(RADIO_OWNERS), rel_eq=("owned by {v}",))),
        ({"state": "Montana", "prefix": "K"}, {"state": "Maine", "prefix": "W"},
         {"state": "Nebraska", "prefix": "K"}, {"state": "Ohio", "prefix": "W"}),
        "List of radio stations in {state}", "FM stations", "FM", rows=(8, 22)),
    Domain(
        "municipalities", "municipality", "municipalities",
        (text("Municipality", pick(MUNICIPALITIES + TOWNS[:10]), required=True, unique=True,
              count_noun="municipalities"),
         text("Type", pick(("City", "Town", "Village", "Borough")), rel_eq=("that is a {v}",)),
         text("County", pick(COUNTIES), rel_eq=("in {v} County",)),
         real("Population (2010)", integer(450, 96000), noun="population (2010)", measure=True, required=True,
              with_gt=("a population (2010) over {v}",)),
         real("Area (sq mi)", decimal(0.6, 48.0, 1), noun="area (sq mi)", measure=True),
         real("Density (/sq mi)", None, noun="density (/sq mi)", measure=True),
         real("Incorporated", integer(1790, 1965), noun="year incorporated", rel_eq=("incorporated in {v}",),
              rel_lt=("incorporated before {v}",))),
        ({"state": "Pennsylvania"}, {"state": "New Jersey"}, {"state": "Wisconsin"}, {"state": "Vermont"}),
        "List of municipalities in {state}", "Municipalities", "Municipalities", rows=(8, 22),
        finalize=fin_municipalities),
    Domain(
        "singles", "single", "singles",
        (real("Year", integer(1996, 2014), required=True, eq=0.6, cmp=0.2, rel_eq=("released in {v}",)),
         text("Single", pick(SONG_TITLES), required=True, unique=True, count_noun="singles",
              rel_eq=("titled {v}",)),
         real("US Hot 100", integer(1, 100), noun="US Hot 100 position"),
         real("US R&B", integer(1, 100), noun="US R&B position"),
         real("UK Singles", integer(1, 75), noun="UK singles position"),
         real("Weeks on chart", integer(1, 42), noun="weeks on chart", measure=True,
              with_gt=("more than {v} weeks on the chart",)),
         text("Album", pick(ALBUM_TITLES), rel_eq=("from the album {v}", "from {v}"))),
        ({"artist": "Jade Monroe"}, {"artist": "Sister Ruby"}, {"artist": "DJ Kilowatt"},
         {"artist": "Leo Santana"}),
        "{artist} discography", "Singles", "Singles", rows=(6, 16), finalize=fin_sorted_years),
    Domain(
        "cricket_records", "player", "players",
        (real("Rank", None, eq=0.6, cmp=0.2),
         text("Player", person(), who=True, required=True, unique=True, count_noun="players"),
         text("Team", pick(CRICKET_TEAMS), rel_eq=("playing for {v}", "from {v}")),
         text("Span", span(1975, 2002, short=0.0), rel_eq=("who played {v}",)),
         real("Matches", None, measure=True, with_gt=("more than {v} matches",)),
         real("Innings", None, measure=True),
         real("Runs", None, measure=True, required=True, with_gt=("more than {v} runs",),
              with_lt=("fewer than {v} runs",)),
         text("Highest score", None, noun="highest score", cond=0.5),
         real("Average", None, measure=True, eq=0.2, cmp=0.4),
         real("100s", None, measure=True, with_eq=("{v} hundreds",)),
         real("50s", None, measure=True, with_eq=("{v} fifties",))),
        ({"format": "One Day International", "year": 1999}, {"format": "Test", "year": 2004},
         {"format": "One Day International", "year": 2008}, {"format": "Test", "year": 1992}),
        "List of {format} cricket records", "Most career runs ({year})", "Most runs", rows=(8, 16),
        finalize=fin_cricket),
    Domain(
        "boxing_record", "fight", "fights",
        (real("No.", None, noun="fight number", required=True, eq=0.6, cmp=0.2, rel_eq=("numbered {v}",)),
         text("Result", None, required=True, count_noun="fights"),
         text("Record", None, cond=0.6),
         text("Opponent", person(), who=True, required=True, rel_eq=("against {v}",)),
         text("Type", None, rel_eq=("won by {v}", "decided by {v}")),
         real("Round", None, measure=True, with_eq=("round {v}",), rel_eq=("ending in round {v}",)),
         text("Date", None, rel_eq=("on {v}",)),
         text("Location", pick(VENUES), rel_eq=("held at {v}",))),
        ({"boxer": "Danny Kovac", "debut": 1986}, {"boxer": "Rafael Santos", "debut": 1994},
         {"boxer": "Keith Marsh", "debut": 2001}, {"boxer": "Emeka Hale", "debut": 1979}),
        "{boxer}", "Professional boxing record", "Professional record", rows=(8, 24), finalize=fin_boxing),
    Domain(
        "contestants", "contestant", "contestants",
        (text("Contestant", person(EVERYONE), who=True, required=True, unique=True, count_noun="contestants"),
         real("Age", integer(21, 58), measure=True, rel_eq=("aged {v}",), rel_gt=("older than {v}",),
              rel_lt=("younger than {v}",)),
         text("Hometown", lambda r, row, i, n, c: f"{r.choice(TOWNS)}, {r.choice(STATES)}",
              rel_eq=("from {v}",)),
         text("Occupation", pick(OCCUPATIONS), rel_eq=("who works as a {v}",)),
         real("Starting weight (lbs)", integer(210, 430), noun="starting weight (lbs)", measure=True,
              required=True),
         real("Weight lost (lbs)", None, noun="weight lost (lbs)", measure=True),
         real("Percentage lost", None, noun="percentage lost", measure=True, eq=0.2, cmp=0.4),
         text("Finish", None, rel_eq=("who finished as {v}",))),
        ({"show": "Shape Up America", "season": 2}, {"show": "Shape Up America", "season": 5},
         {"show": "Weight Wars", "season": 1}, {"show": "Fit Camp", "season": 3}),
        "{show} (season {season})", "Contestants", "Contestants", rows=(8, 16), finalize=fin_contestants),
)

# ------------------------------------------------------------------------------------------------------------
# Building tables
# ------------------------------------------------------------------------------------------------------------


@dataclass
class TCol:
    col: Col
    header: str
    noun: str


@dataclass
class TableInfo:
    domain: Domain
    ctx: Ctx
    table: Table
    tcols: list[TCol]
    json: dict[str, Any]
    conn: sqlite3.Connection | None = None
    sqls: set[str] = field(default_factory=set)
    questions: set[str] = field(default_factory=set)


def new_table_id(r: random.Random, used: set[str]) -> tuple[str, str]:
    while True:
        a, b = r.randint(10000000, 29999999), r.randint(1, 12)
        table_id = f"1-{a}-{b}"
        if table_id not in used:
            used.add(table_id)
            return table_id, f"table_{a}_{b}"


def build_table(domain: Domain, ctx: Ctx, r: random.Random, used_ids: set[str]) -> TableInfo:
    ctx = dict(ctx)
    if domain.prepare:
        domain.prepare(r, ctx)
    n = r.randint(*domain.rows)
    rows: list[Row] = []
    seen: dict[str, set[Any]] = {c.header: set() for c in domain.cols if c.unique}
    for i in range(n):
        row: Row = {}
        for col in domain.cols:
            if col.gen is None:
                row[col.header] = None
                continue
            for _ in range(500):
                value = col.gen(r, row, i, n, ctx)
                key = value.lower() if isinstance(value, str) else value
                if not col.unique or key not in seen[col.header]:
                    break
            else:
                raise RuntimeError(f"{domain.name}: cannot draw a unique {col.header!r}")
            if col.unique:
                seen[col.header].add(key)
            row[col.header] = value
        rows.append(row)
    if domain.finalize:
        rows = domain.finalize(rows, r, ctx)

    columns = [c for c in domain.cols if not c.header.startswith("_")]
    required = [c for c in columns if c.required]
    optional = [c for c in columns if not c.required]
    hi = min(8, len(columns))
    k = min(hi, max(4, len(required), r.choice((5, 5, 6, 6, 6, 7, 7, 8))))
    chosen_set = {c.header for c in required} | {c.header for c in r.sample(optional, k - len(required))}
    chosen = [c for c in columns if c.header in chosen_set]
    if not any(c.type == "real" for c in chosen) or not any(c.type == "text" for c in chosen):
        raise RuntimeError(f"{domain.name}: a table needs both text and real columns")
    tcols = [TCol(c, c.header.format(**ctx), (c.noun or c.header.lower()).format(**ctx)) for c in chosen]
    cells = [[row[c.header] for c in chosen] for row in rows]
    for line in cells:
        for cell, c in zip(line, chosen, strict=True):
            ok = isinstance(cell, str) if c.type == "text" else isinstance(cell, int | float)
            if not ok or isinstance(cell, bool):
                raise RuntimeError(f"{domain.name}: bad cell {cell!r} in {c.header!r}")
    table_id, name = new_table_id(r, used_ids)
    obj = {
        "id": table_id,
        "header": [t.header for t in tcols],
        "types": [c.type for c in chosen],
        "rows": cells,
        "page_title": domain.page.format(**ctx),
        "section_title": domain.section.format(**ctx),
        "caption": domain.caption.format(**ctx),
        "name": name,
    }
    table = Table.from_json(obj)
    return TableInfo(domain, ctx, table, tcols, obj)


def connect(info: TableInfo) -> sqlite3.Connection:
    """An in-memory SQLite copy of the table: TEXT COLLATE NOCASE / REAL columns named by the real headers."""
    if info.conn is None:
        conn = sqlite3.connect(":memory:")
        table = info.table
        columns = ", ".join(f"{quote_identifier(h)} {'TEXT COLLATE NOCASE' if t == 'text' else 'REAL'}"
                            for h, t in zip(table.header, table.types, strict=True))
        conn.execute(f"CREATE TABLE {quote_identifier(info.json['name'])} ({columns})")
        marks = ", ".join("?" for _ in table.header)
        conn.executemany(f"INSERT INTO {quote_identifier(info.json['name'])} VALUES ({marks})", table.rows)
        info.conn = conn
    return info.conn


def execute(info: TableInfo, query: Query) -> tuple[list[tuple[Any, ...]], int]:
    """(result rows, number of table rows matching the WHERE clause) of a gold query."""
    conn = connect(info)
    sql = render_sql(query, info.table, table_name=info.json["name"])
    result = conn.execute(sql).fetchall()
    count_query = Query(sel=query.sel, agg=3, conds=query.conds)
    matched = conn.execute(render_sql(count_query, info.table, table_name=info.json["name"])).fetchone()[0]
    return result, matched


# ------------------------------------------------------------------------------------------------------------
# Queries and questions
# ------------------------------------------------------------------------------------------------------------


def clean_number(value: float) -> int | float:
    value = round(float(value), 3)
    return int(value) if value.is_integer() else value


def threshold(r: random.Random, value: float, column: list[float], above: bool) -> int | float | None:
    """A natural-looking number strictly below (or above) `value`: another row's value or a rounded one
    (None where there is none, e.g. below 0 in a column of non-negative numbers)."""
    others = sorted({v for v in column if (v > value if above else v < value)})
    if others and r.random() < 0.45:
        near = others[:3] if above else others[-3:]
        return clean_number(r.choice(near))
    sign = 1 if above else -1
    options: set[float] = set()
    if float(value).is_integer():
        v = int(value)
        options = {v + sign, v + sign * r.randint(2, 5)}
        rounded_options = set()
        for step in (5, 10, 50, 100, 500, 1000, 5000, 10000, 100000, 1000000):
            rounded = (v // step + 1) * step if above else (v // step) * step
            if rounded != v and abs(rounded - v) <= max(5, 0.15 * abs(v)):
                rounded_options.add(rounded)
        if rounded_options and r.random() < 0.6:
            options = rounded_options
    elif abs(value) < 1:
        options = {round(value + sign * 0.01, 2), round(value + sign * 0.005, 3)}
    else:
        options = {round(value + sign * r.choice((0.1, 0.2, 0.5)), 1),
                   round(value + sign * r.choice((0.01, 0.05)), 2)}
        if abs(value) >= 10:
            options.add(math.ceil(value) if above else math.floor(value))
    floor = 0 if min(column) >= 0 else -math.inf
    good = sorted(x for x in options if (x > value if above else x < value) and x >= floor)
    return clean_number(r.choice(good)) if good else None


def vary_case(r: random.Random, value: str) -> str:
    """The value in another letter case, as WikiSQL's questions often have it (ASCII letters only)."""
    if not any(ch.isalpha() for ch in value) or not all(ch.isascii() for ch in value if ch.isalpha()):
        return value
    kind = r.choices(("lower", "upper", "title"), weights=(0.7, 0.12, 0.18))[0]
    varied = value.lower() if kind == "lower" else value.upper() if kind == "upper" else value.title()
    if varied == value:
        varied = value.lower() if value != value.lower() else value.upper()
    return varied


@dataclass(frozen=True)
class Spec:
    agg: int
    nconds: int
    need_op: int | None = None


AGG_WEIGHTS = {0: 0.48, 1: 0.1, 2: 0.1, 3: 0.12, 4: 0.08, 5: 0.12}
NCOND_WEIGHTS = {0: 0.03, 1: 0.5, 2: 0.32, 3: 0.1, 4: 0.05}
CASE_CHANGE = 0.6


def draw_query(r: random.Random, info: TableInfo, spec: Spec) -> tuple[Query, list[str]] | None:
    """A logical form around one anchor row, with the condition values as the question will show them."""
    table, tcols = info.table, info.tcols
    anchor = r.randrange(len(table.rows))
    if spec.agg in (1, 2):
        sels = [i for i, t in enumerate(tcols) if t.col.type == "real"]
    elif spec.agg in (4, 5):
        sels = [i for i, t in enumerate(tcols) if t.col.type == "real" and t.col.measure]
    else:
        sels = list(range(len(tcols)))
    if not sels:
        return None
    weights = [2.0 if tcols[i].col.required else 1.0 for i in sels]
    sel = r.choices(sels, weights=weights)[0]
    candidates = [i for i, t in enumerate(tcols) if i != sel and t.col.cond > 0]
    if len(candidates) < spec.nconds:
        return None
    picked: list[int] = []
    pool = list(candidates)
    forced: int | None = None
    if spec.need_op is not None:
        comparable = [i for i in pool if tcols[i].col.type == "real" and tcols[i].col.cmp > 0]
        if not comparable or spec.nconds == 0:
            return None
        forced = r.choice(comparable)
        picked.append(forced)
        pool.remove(forced)
    while len(picked) < spec.nconds:
        i = r.choices(pool, weights=[tcols[j].col.cond for j in pool])[0]
        picked.append(i)
        pool.remove(i)
    r.shuffle(picked)
    conds: list[tuple[int, int, Any]] = []
    shown: list[str] = []
    for i in picked:
        col = tcols[i].col
        cell = table.rows[anchor][i]
        if col.type == "text":
            op = 0
        elif spec.need_op is not None and i == forced:
            op = spec.need_op
        else:
            op = r.choices((0, 1, 2), weights=(col.eq, col.cmp, col.cmp))[0]
        if op == 0 and col.type == "text":
            value: Any = vary_case(r, cell) if r.random() < CASE_CHANGE else cell
            shown.append(value)
        elif op == 0:
            value = clean_number(cell)
            shown.append(format_number(value))
        else:
            column = [row[i] for row in table.rows]
            value = threshold(r, cell, column, above=(op == 2))
            if value is None:
                return None
            shown.append(format_number(value))
        conds.append((i, op, value))
    return Query(sel=sel, agg=spec.agg, conds=tuple(conds)), shown


def article(noun: str) -> str:
    first = noun.split()[0]
    low = noun.lower()
    if low.startswith(("u.s.", "uni", "us ", "one", "euro")):
        return "a"
    if first.isupper() and first.isalpha() and len(first) > 1:
        return "an" if first[0] in "AEFHILMNORSX" else "a"
    return "an" if low[0] in "aeiou" else "a"


def join(parts: list[str], r: random.Random) -> str:
    if len(parts) <= 2 or r.random() < 0.3:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


IS_EQ = ("the {n} is {v}", "{n} is {v}", "the {n} was {v}")
IS_GT = ("the {n} is greater than {v}", "the {n} is more than {v}", "the {n} is over {v}",
         "{n} is larger than {v}", "the {n} was above {v}")
IS_LT = ("the {n} is less than {v}", "the {n} is smaller than {v}", "the {n} is under {v}",
         "{n} is below {v}", "the {n} was lower than {v}")
WITH_EQ = ("{a} {n} of {v}",)
WITH_GT = ("{a} {n} greater than {v}", "{a} {n} larger than {v}", "{a} {n} over {v}", "{a} {n} more than {v}")
WITH_LT = ("{a} {n} less than {v}", "{a} {n} smaller than {v}", "{a} {n} under {v}", "{a} {n} below {v}")
REL_EQ = ("with {a} {n} of {v}", "whose {n} is {v}", "that has {a} {n} of {v}")
REL_GT = ("with {a} {n} greater than {v}", "whose {n} is more than {v}", "with {a} {n} above {v}")
REL_LT = ("with {a} {n} less than {v}", "whose {n} is under {v}", "with {a} {n} below {v}")
IS_CONNECTORS = (" when ", " where ", " if ", " when ")

OPEN_WHAT = ("What is the {n}", "What was the {n}", "Name the {n}", "Tell me the {n}", "Which {n} is listed",
             "What {n} is given", "Give the {n}")
OPEN_WHO = ("Who is the {n}", "Who was the {n}", "Name the {n}", "Which {n} is listed")
OPEN_ALL = ("List all the {n} values", "What are all the {n} values", "Name every {n} listed",
            "List each {n}")
OPEN_AGG = {
    1: ("What is the highest {n}", "What is the largest {n}", "What is the maximum {n}", "Name the most {n}",
        "What was the greatest {n}", "Name the highest {n}"),
    2: ("What is the lowest {n}", "What is the smallest {n}", "What is the minimum {n}", "Name the least {n}",
        "What was the lowest {n}", "Name the lowest {n}"),
    3: ("How many {n} entries are there", "How many {n} values are listed",
        "What is the number of {n} entries", "Count the {n} entries", "How many {n} are listed"),
    4: ("What is the total {n}", "What is the sum of the {n}", "What is the combined {n}",
        "Name the sum of {n}", "What was the total {n}", "What is the sum of {n}"),
    5: ("What is the average {n}", "What is the mean {n}", "What was the average {n}", "Name the average {n}",
        "What is the average of the {n}"),
}
OPEN_COUNT_ENTITY = ("How many {cn} are there", "How many {cn} are listed", "What is the number of {cn}",
                     "Count the {cn}")
ZERO_TAILS = ("", " in the table", " overall", " of all {entities}", " across all {entities}", " listed")


def clause(r: random.Random, style: str, t: TCol, op: int, shown: str, ctx: Ctx, entity: str) -> str:
    col = t.col
    if style == "is":
        templates = (IS_EQ, IS_GT, IS_LT)[op]
    elif style == "with":
        custom = (col.with_eq, col.with_gt, col.with_lt)[op]
        templates = custom if custom and r.random() < 0.7 else (WITH_EQ, WITH_GT, WITH_LT)[op]
    else:
        custom = (col.rel_eq, col.rel_gt, col.rel_lt)[op]
        if not custom and op == 0 and (col.count_noun or t.noun == entity):
            custom = ("named {v}", "called {v}")
        with_custom = tuple(f"with {x}" for x in (col.with_eq, col.with_gt, col.with_lt)[op])
        if custom and r.random() < 0.75:
            templates = custom
        elif with_custom and r.random() < 0.5:
            templates = with_custom
        else:
            templates = (REL_EQ, REL_GT, REL_LT)[op]
    return r.choice(templates).format(n=t.noun, a=article(t.noun), v=shown, **ctx)


def phrase(r: random.Random, info: TableInfo, query: Query, shown: list[str]) -> str:
    t = info.tcols[query.sel]
    dom = info.domain
    fill = {"n": t.noun, "cn": t.col.count_noun, "entities": dom.entities}
    if query.agg == 0:
        head = r.choice(OPEN_ALL if not query.conds else OPEN_WHO if t.col.who else OPEN_WHAT)
    elif query.agg == 3 and t.col.count_noun and r.random() < 0.6:
        head = r.choice(OPEN_COUNT_ENTITY)
    else:
        head = r.choice(OPEN_AGG[query.agg])
    head = head.format(**fill)
    if not query.conds:
        tail = r.choice(ZERO_TAILS if query.agg or not head.startswith("List") else ("", " in the table"))
        tail = tail.format(**fill)
    else:
        styles, weights = ["is", "with", "for"], [0.45, 0.3, 0.25]
        if t.col.count_noun or t.noun == dom.entity:  # not 'the player for the player ...'
            styles, weights = ["is", "with"], [0.55, 0.45]
        style = r.choices(styles, weights=weights)[0]
        parts = [clause(r, style, info.tcols[c], op, s, info.ctx, dom.entity)
                 for (c, op, _), s in zip(query.conds, shown, strict=True)]
        if style == "is":
            tail = r.choice(IS_CONNECTORS) + join(parts, r)
        elif style == "with":
            tail = " with " + join(parts, r)
        else:
            tail = f" for the {dom.entity} " + join(parts, r)
    end = "."
    if not head.startswith(("Name", "Tell", "List", "Give", "Count")) or r.random() < 0.5:
        end = "?"
    return head + tail + end


def make_example(r: random.Random, info: TableInfo, spec: Spec, tries: int = 80) -> tuple[Query, str] | None:
    for _ in range(tries):
        drawn = draw_query(r, info, spec)
        if drawn is None:
            continue
        query, shown = drawn
        sql = render_sql(query, info.table, table_name=info.json["name"])
        if sql in info.sqls:
            continue
        result, matched = execute(info, query)
        if matched == 0 or not result or any(v is None for row in result for v in row):
            continue
        if query.agg == 0 and query.conds and len(result) > 3:
            continue
        if query.agg == 0 and not query.conds and len(result) > 12:
            continue
        question = phrase(r, info, query, shown)
        if question in info.questions:
            continue
        info.sqls.add(sql)
        info.questions.add(question)
        return query, question
    return None


def specs_for(r: random.Random, split: str, total: int) -> list[Spec]:
    """The split's question plan: a quota guaranteeing every aggregation, operator and condition count, the
    rest drawn from WikiSQL-like weights."""
    big = split == "train"
    specs: list[Spec] = []
    for nconds in (0, 3, 4):
        for _ in range(12 if big else 4):
            specs.append(Spec(r.choices(list(AGG_WEIGHTS), weights=list(AGG_WEIGHTS.values()))[0], nconds))
    for agg in range(len(AGG_OPS)):
        for _ in range(8 if big else 3):
            specs.append(Spec(agg, r.choice((1, 1, 2))))
    for op in (1, 2):
        for _ in range(14 if big else 5):
            specs.append(Spec(r.choices(list(AGG_WEIGHTS), weights=list(AGG_WEIGHTS.values()))[0],
                              r.choice((1, 1, 2, 2, 3)), need_op=op))
    while len(specs) < total:
        nconds = r.choices(list(NCOND_WEIGHTS), weights=list(NCOND_WEIGHTS.values()))[0]
        agg = r.choices(list(AGG_WEIGHTS), weights=list(AGG_WEIGHTS.values()))[0]
        if nconds == 0 and agg == 0 and r.random() < 0.7:
            agg = r.choice((1, 2, 3, 4, 5))
        specs.append(Spec(agg, nconds))
    r.shuffle(specs)
    return specs


# ------------------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------------------


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"make_sample.py: sample check failed: {message}")


def text_cells(table: Table, col: int) -> list[str]:
    return [row[col] for row in table.rows]


def is_case_variant(example: dict[str, Any], table: Table) -> bool:
    for col, op, value in example["sql"]["conds"]:
        if op == 0 and table.types[col] == "text":
            cells = text_cells(table, col)
            if value not in cells and value.lower() in {c.lower() for c in cells}:
                return True
    return False


def stats(examples: list[dict[str, Any]], tables: dict[str, Table]) -> dict[str, Any]:
    aggs = Counter(AGG_OPS[e["sql"]["agg"]] or "none" for e in examples)
    ops = Counter(COND_OPS[c[1]] for e in examples for c in e["sql"]["conds"])
    nconds = Counter(len(e["sql"]["conds"]) for e in examples)
    case = sum(is_case_variant(e, tables[e["table_id"]]) for e in examples)
    return {"tables": len(tables), "questions": len(examples),
            "agg": {(AGG_OPS[a] or "none"): aggs.get(AGG_OPS[a] or "none", 0) for a in range(len(AGG_OPS))},
            "op": {o: ops.get(o, 0) for o in COND_OPS[:3]},
            "conds": {k: nconds.get(k, 0) for k in range(5)},
            "case_differing": case}


def verify(out: dict[str, tuple[list[dict[str, Any]], list[TableInfo]]], out_dir: Path) -> dict[str, Any]:
    all_ids: dict[str, str] = {}
    summary: dict[str, Any] = {}
    total_examples = 0
    for split, (examples, infos) in out.items():
        tables = {i.table.id: i.table for i in infos}
        for table_id in tables:
            check(table_id not in all_ids, f"table {table_id} is in {split} and {all_ids.get(table_id)}")
            all_ids[table_id] = split
        infos_by_id = {i.table.id: i for i in infos}
        for info in infos:
            t = info.table
            check(4 <= len(t.header) <= 8, f"{t.id}: {len(t.header)} columns")
            check(5 <= len(t.rows) <= 25, f"{t.id}: {len(t.rows)} rows")
            check(len({h.lower() for h in t.header}) == len(t.header), f"{t.id}: duplicate headers")
            check("text" in t.types and "real" in t.types, f"{t.id}: needs text and real columns")
            for row in t.rows:
                check(len(row) == len(t.header), f"{t.id}: ragged row")
                for cell, typ in zip(row, t.types, strict=True):
                    good = isinstance(cell, str) if typ == "text" else isinstance(cell, int | float)
                    check(cell is not None and good, f"{t.id}: bad cell {cell!r}")
        for n, e in enumerate(examples):
            where = f"{split}.jsonl line {n + 1}"
            example = Example(id=f"{split}-{n}", table_id=e["table_id"], question=e["question"],
                              query=Query.from_json(e["sql"]))
            validate_example(example, tables, where)
            info = infos_by_id[e["table_id"]]
            q, t = example.query, info.table
            if q.agg in (1, 2, 4, 5):
                check(t.types[q.sel] == "real", f"{where}: {AGG_OPS[q.agg]} on a text column")
            check(len({c for c, _, _ in q.conds}) == len(q.conds), f"{where}: repeated condition column")
            for col, op, value in q.conds:
                if op in (1, 2):
                    check(t.types[col] == "real" and isinstance(value, int | float),
                          f"{where}: {COND_OPS[op]} needs a real column and a number")
                if t.types[col] == "real":
                    check(isinstance(value, int | float) and not isinstance(value, bool),
                          f"{where}: real column condition value {value!r} is not a JSON number")
                    shown = format_number(value)
                else:
                    check(isinstance(value, str), f"{where}: text condition value {value!r} is not a string")
                    shown = value
                check(shown in e["question"], f"{where}: value {shown!r} not in question {e['question']!r}")
            result, matched = execute(info, q)
            check(matched > 0 and bool(result), f"{where}: gold query returns nothing")
            check(all(v is not None for row in result for v in row), f"{where}: gold query returns NULL")
            check("SELECT" not in e["question"].upper().split(), f"{where}: SQL in the question")
        summary[split] = stats(examples, tables)
        total_examples += len(examples)
        s = summary[split]
        for agg, count in s["agg"].items():
            check(count > 0, f"{split}: no {agg} aggregation")
        for op, count in s["op"].items():
            check(count > 0, f"{split}: no {op} condition")
        for k, count in s["conds"].items():
            check(count > 0, f"{split}: no example with {k} conditions")
    check(len(all_ids) >= 60, f"only {len(all_ids)} tables")
    check(total_examples >= 500, f"only {total_examples} questions")
    overall = Counter()
    for s in summary.values():
        for k, v in s["conds"].items():
            overall[k] += v
    for k in (0, 3, 4):
        check(overall[k] >= 15, f"only {overall[k]} examples with {k} conditions")
    case = sum(s["case_differing"] for s in summary.values())
    check(case >= 0.3 * total_examples, f"only {case}/{total_examples} examples with case-differing values")
    headers = [h for _, infos in out.values() for i in infos for h in i.table.header]
    for ch in (" ", "/", ".", "#", "("):
        check(any(ch in h for h in headers), f"no header with {ch!r}")
    summary["_data_bytes"] = sum((out_dir / f"{s}{ext}").stat().st_size
                                 for s in SPLITS for ext in (".jsonl", ".tables.jsonl"))
    return summary


# ------------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------------


def dump_jsonl(path: Path, objs: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for obj in objs:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")


README = """\
# Bundled WikiSQL-format sample

The data behind `data.source=sample`: a small, **synthetic** data set in the layout of the official WikiSQL
release (`{{split}}.jsonl` + `{{split}}.tables.jsonl` for `train`, `dev`, `test`), so the whole pipeline runs
offline. It is *not* WikiSQL and contains no WikiSQL text: the tables are filled in from hand-written
templates, and the people, shows, albums, clubs and numbers in them are made up (real place and team names
are used only as context).

## How it was made

`python scripts/make_sample.py` (seed {seed}) writes every file here, this README included; the same code
writes the same bytes. It holds {domains} hand-written table templates, one per domain (NBA rosters, NHL
draft rounds, TV episode lists, House elections, filmographies, discographies, Formula One results, tallest
buildings, countries, high schools, league tables, tennis finals, golf leaderboards, medal tables, NFL and NBA
schedules, baseball batting, track finals, destroyers, metro stations, airports, video games, awards,
mountains, universities, car engines, radio stations, municipalities, singles, cricket records, a boxing
record, a reality show's contestants): WikiSQL-style headers (`No.`, `Pick #`, `School/Club Team`,
`Years in Toronto`, `U.S. viewers (millions)`, `Height (ft)`, `# / County`, ...), value pools, and how
questions phrase each column. Each template yields several tables (4-8 columns, 5-25 rows, text and real
columns; real cells are JSON numbers); the tables of a domain are spread over the splits, and the splits are
table-disjoint.

Questions are generated around logical forms `{{sel, agg, conds}}` drawn from a table's rows: all conditions
come from one anchor row, `>`/`<` thresholds are numbers just past the anchor's value, and the question is
phrased from templates and mentions every condition value exactly as the `sql` holds it. About half of the
text values are written in another letter case than the cell (`toronto raptors` for `Toronto Raptors`), as in
WikiSQL, so they only match case-insensitively. Every gold query was rendered with
`experiments.data.prompt.render_sql` and executed against an in-memory SQLite copy of its table (text columns
`TEXT COLLATE NOCASE`, real columns `REAL`, the real header names as quoted column names); only queries with a
non-empty result free of NULL were kept (and, without aggregation, at most 3 result rows when there are
conditions). The generator asserts the properties below at the end; `tests/data/test_sample_data.py` checks them
again from the files.

No `{{split}}.db` files are bundled; the evaluator builds its SQLite tables from `{{split}}.tables.jsonl`.

## Counts

{rows}

Aggregation columns count questions; operator columns count conditions; "case-differing" counts questions with
a text condition value whose letter case differs from every matching cell. The `.jsonl` files take {kb} KB.
"""


def render_readme(summary: dict[str, Any]) -> str:
    lines = []
    totals: Counter[str] = Counter()
    for split in (*SPLITS, "total"):
        if split == "total":
            s = totals
            cells = [s["tables"], s["questions"], *(s[f"agg:{a or 'none'}"] for a in AGG_OPS),
                     *(s[f"op:{o}"] for o in COND_OPS[:3]), *(s[f"conds:{k}"] for k in range(5)),
                     s["case_differing"]]
            lines.append("| **total** | " + " | ".join(f"**{c}**" for c in cells) + " |")
            continue
        s = summary[split]
        cells = [s["tables"], s["questions"], *s["agg"].values(), *s["op"].values(), *s["conds"].values(),
                 s["case_differing"]]
        lines.append(f"| {split} | " + " | ".join(str(c) for c in cells) + " |")
        totals["tables"] += s["tables"]
        totals["questions"] += s["questions"]
        totals["case_differing"] += s["case_differing"]
        for k, v in s["agg"].items():
            totals[f"agg:{k}"] += v
        for k, v in s["op"].items():
            totals[f"op:{k}"] += v
        for k, v in s["conds"].items():
            totals[f"conds:{k}"] += v
    columns = ["split", "tables", "questions", "none", "MAX", "MIN", "COUNT", "SUM", "AVG",
               "`=`", "`>`", "`<`", "0 conds", "1", "2", "3", "4", "case-differing"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *lines]
    return README.format(seed=SEED, domains=len(DOMAINS), rows="\n".join(lines),
                         kb=round(summary["_data_bytes"] / 1024))


def make_examples(r: random.Random, infos: list[TableInfo], specs: list[Spec]) -> list[dict[str, Any]]:
    """One question per spec, on the first table (round robin from the spec's position) that can ask it."""
    examples: list[dict[str, Any]] = []
    for k, spec in enumerate(specs):
        for attempt in range(len(infos)):
            info = infos[(k + attempt) % len(infos)]
            made = make_example(r, info, spec)
            if made is not None:
                query, question = made
                examples.append({"phase": 1, "table_id": info.table.id, "question": question,
                                 "sql": query.to_json()})
                break
    return examples


def generate(out_dir: Path) -> dict[str, Any]:
    r = random.Random(SEED)
    used_ids: set[str] = set()
    infos_by_split: dict[str, list[TableInfo]] = {s: [] for s in SPLITS}
    for d, domain in enumerate(DOMAINS):
        contexts = r.sample(list(domain.contexts), 3)
        held_out = "dev" if d % 2 == 0 else "test"
        for ctx, split in zip(contexts, ("train", "train", held_out), strict=True):
            infos_by_split[split].append(build_table(domain, ctx, r, used_ids))

    out: dict[str, tuple[list[dict[str, Any]], list[TableInfo]]] = {}
    for split in SPLITS:
        infos = infos_by_split[split]
        r.shuffle(infos)
        examples = make_examples(r, infos, specs_for(r, split, QUESTIONS_PER_TABLE * len(infos)))
        r.shuffle(examples)
        out[split] = (examples, infos)

    extra = random.Random(SEED + 1)
    infos = [build_table(domain, extra.choice(domain.contexts), extra, used_ids)
             for domain in DOMAINS for _ in range(EXTRA_TRAIN_TABLES_PER_DOMAIN)]
    extra.shuffle(infos)
    examples = make_examples(extra, infos, specs_for(extra, "train", QUESTIONS_PER_TABLE * len(infos)))
    extra.shuffle(examples)
    out["train"] = (out["train"][0] + examples, out["train"][1] + infos)

    out_dir.mkdir(parents=True, exist_ok=True)
    for split, (examples, infos) in out.items():
        dump_jsonl(out_dir / f"{split}.jsonl", examples)
        dump_jsonl(out_dir / f"{split}.tables.jsonl", [i.json for i in infos])
    summary = verify(out, out_dir)
    (out_dir / "README.md").write_text(render_readme(summary), encoding="utf-8", newline="\n")
    summary["_bytes"] = summary["_data_bytes"] + (out_dir / "README.md").stat().st_size
    check(summary["_bytes"] <= MAX_BYTES, f"sample is {summary['_bytes']} bytes")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default: {OUT_DIR})")
    args = parser.parse_args(argv)
    summary = generate(args.out)
    for split in SPLITS:
        s = summary[split]
        print(f"{split}: {s['tables']} tables, {s['questions']} questions, agg {s['agg']}, op {s['op']}, "
              f"conds {s['conds']}, case-differing {s['case_differing']}")
    print(f"wrote {args.out} ({summary['_bytes']} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
