#!/usr/bin/env python3
"""Generate the bundled multi-table sample in Spider's release layout in src/experiments/data/spider_sample/.

Databases come from hand-written schema specs, one per domain (tables, typed columns, primary keys, foreign
keys, value generators), filled in with a seeded RNG and written as SQLite files (`PRAGMA page_size=1024`,
FOREIGN KEY constraints enforced while inserting, VACUUMed). Questions come from templates instantiated on
each database's schema and rows: single-table filters and aggregates, GROUP BY / HAVING, ORDER BY ... LIMIT,
joins of 2-4 tables along foreign keys (aliases T1, T2, ... as Spider writes them), IN / NOT IN / scalar
subqueries, INTERSECT / UNION / EXCEPT, LIKE / BETWEEN / IN lists, DISTINCT, and BIRD-style questions whose
wording needs a hint (`evidence`, e.g. "senior refers to age >= 60"). Every gold query is executed on its
database and kept only if it returns a non-empty result (no all-NULL first row, no zero count; ORDER BY ...
LIMIT only where the cut-off is not a tie). Splits are database-disjoint. The sample's properties are asserted
at the end; any failure exits non-zero.

Pure standard library. Deterministic: the same code writes the same JSON bytes on any machine (fixed seed, no
iteration over unordered sets); the SQLite files hold the same content (their header bytes carry the SQLite
version that wrote them).

    python scripts/make_spider_sample.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sqlite3
import statistics
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261205
OUT_DIR = ROOT / "src" / "experiments" / "data" / "spider_sample"
SPLITS = ("train", "dev", "test")
QUESTION_FILES = {"train": "train_spider.json", "dev": "dev.json", "test": "test.json"}
QUESTIONS_PER_DB = 45
EVIDENCE_SHARE = 0.13
MAX_BYTES = 3_000_000
CHARS_PER_TOKEN = 3.5

# ------------------------------------------------------------------------------------------------------------
# Value pools (ASCII, no quotes: values go into SQL literals and questions verbatim)
# ------------------------------------------------------------------------------------------------------------

FIRST = ("James", "Maria", "Chen", "Aisha", "David", "Sofia", "Omar", "Emily", "Lucas", "Hana", "Noah", "Priya",
         "Mateo", "Olivia", "Kofi", "Elena", "Ivan", "Grace", "Diego", "Yuki", "Samuel", "Leila", "Marcus",
         "Anna", "Tomas", "Fatima", "Henry", "Ines", "Ravi", "Clara", "Jonas", "Mei", "Peter", "Zara", "Hugo",
         "Nadia", "Felix", "Rosa", "Amir", "Julia")
LAST = ("Smith", "Garcia", "Wang", "Okafor", "Muller", "Rossi", "Kim", "Novak", "Silva", "Patel", "Johnson",
        "Tanaka", "Dubois", "Kowalski", "Hansen", "Lopez", "Nguyen", "Brown", "Ahmed", "Fischer", "Moreau",
        "Costa", "Jensen", "Ivanova", "Baker", "Cohen", "Reyes", "Larsen", "Singh", "Walker", "Meyer", "Sato",
        "Clark", "Haddad", "Ortiz", "Berg", "Lindqvist", "Mendes", "Park", "Young")
CITIES = ("Boston", "Denver", "Austin", "Seattle", "Chicago", "Portland", "Atlanta", "Phoenix", "Dallas",
          "Miami", "Toronto", "Madrid", "Lyon", "Milan", "Berlin", "Hamburg", "Oslo", "Dublin", "Lisbon",
          "Prague", "Vienna", "Krakow", "Osaka", "Seoul", "Sydney", "Perth", "Nairobi", "Lagos", "Lima",
          "Bogota")
COUNTRIES = ("USA", "Canada", "Mexico", "Brazil", "France", "Germany", "Spain", "Italy", "Japan", "Kenya",
             "India", "Australia", "Norway", "Poland", "Egypt", "Chile")
ADJ = ("Silver", "Golden", "Blue", "Quiet", "Royal", "Green", "Northern", "Bright", "Old", "Grand", "Little",
       "Red", "Hidden", "Crystal", "Iron", "Sunny", "Wild", "Urban")

# ------------------------------------------------------------------------------------------------------------
# Schema specs. A table is (name, plural or "", rows, columns); a column is "name kind[:args] [~hi,lo]".
# Kinds: pk, fk:<table>, person, first, last, city, country, pick:a|b|c, uniq:a|b|c (unique, caps the rows),
# combo:a|b/c|d (unique "a c" pairs), int:lo:hi, real:lo:hi, date:y0:y1, bool. "~hi,lo" gives a numeric
# column the words of the evidence questions ("senior refers to age >= 60").
# ------------------------------------------------------------------------------------------------------------

A = "|".join(ADJ)
SPECS: dict[str, list[tuple[str, str, int, str]]] = {
    "school": [
        ("department", "", 8, "department_id pk; name uniq:Mathematics|Physics|History|Biology|Chemistry|Art|Music|"
         "Economics; building pick:North Hall|South Hall|Main Building|Science Center; budget int:50000:400000"),
        ("teacher", "", 24, "teacher_id pk; name person; department_id fk:department; age int:26:66 ~senior,junior; "
         "salary int:38000:98000; hire_date date:2005:2023"),
        ("course", "", 30, "course_id pk; title combo:Intro to|Advanced|Applied|Modern/Algebra|Optics|Genetics|"
         "Painting|Trade|Poetry|Statistics; teacher_id fk:teacher; credits int:1:5; level pick:100|200|300"),
        ("student", "", 40, "student_id pk; name person; city city; age int:17:30; gpa real:1.8:4.0"),
        ("enrollment", "", 80, "enrollment_id pk; student_id fk:student; course_id fk:course; "
         "grade int:40:100 ~passing,failing; semester pick:Fall|Spring|Summer"),
        ("scholarship", "", 20, "scholarship_id pk; name combo:Merit|Founders|Alumni|Dean/Award|Grant|Prize; "
         "student_id fk:student; amount int:500:12000 ~generous,modest; award_year int:2019:2023"),
    ],
    "hospital": [
        ("department", "", 7, "department_id pk; name uniq:Cardiology|Oncology|Neurology|Pediatrics|Radiology|"
         "Surgery|Emergency; floor int:1:9"),
        ("physician", "", 20, "physician_id pk; name person; department_id fk:department; "
         "years_experience int:1:35 ~veteran,novice; specialty pick:General|Consultant|Resident"),
        ("patient", "", 40, "patient_id pk; name person; age int:1:95 ~senior,young; gender pick:F|M; "
         "city city; insured bool"),
        ("appointment", "", 70, "appointment_id pk; patient_id fk:patient; physician_id fk:physician; "
         "appointment_date date:2021:2023; cost real:40:900 ~expensive,cheap; status pick:Completed|"
         "Cancelled|Scheduled"),
    ],
    "flights": [
        ("airport", "", 16, "airport_id pk; name uniq:Logan|Heathrow|Narita|Schiphol|Changi|Dulles|Midway|"
         "OHare|Gatwick|Orly|Tegel|Incheon|Kastrup|Arlanda|Barajas|Fiumicino; city city; country country; "
         "elevation int:2:1700"),
        ("airline", "", 10, "airline_id pk; name uniq:SkyWays|AeroNova|BlueJet|SunAir|Polar Wings|Coastal Air|"
         "TransGlobal|Nimbus|Falcon Air|Zephyr; country country; fleet_size int:12:300 ~large,small"),
        ("flight", "", 60, "flight_id pk; flight_number uniq:" + "|".join(f"FL{n}" for n in range(101, 181))
         + "; airline_id fk:airline; origin_airport_id fk:airport; destination_airport_id fk:airport; "
         "distance int:200:9000 ~long,short; price real:60:1800"),
        ("passenger", "", 40, "passenger_id pk; name person; nationality country; age int:2:88"),
        ("booking", "", 80, "booking_id pk; passenger_id fk:passenger; flight_id fk:flight; "
         "seat_class pick:Economy|Business|First; fare real:50:2500"),
    ],
    "music": [
        ("artist", "", 20, "artist_id pk; name person; country country; debut_year int:1965:2018; "
         "genre pick:Rock|Jazz|Pop|Folk|Hip Hop|Classical"),
        ("album", "", 35, "album_id pk; title combo:" + A + "/Nights|Roads|Echoes|Dreams|Skies|Stories; "
         "artist_id fk:artist; release_year int:1970:2023; sales int:5000:900000 ~bestselling,obscure"),
        ("song", "", 70, "song_id pk; title combo:" + A + "/Heart|River|Fire|Song|Road|Light|Rain; "
         "album_id fk:album; duration int:120:420 ~long,short; rating real:1:10"),
    ],
    "retail": [
        ("category", "categories", 8, "category_id pk; name uniq:Electronics|Garden|Kitchen|Toys|Books|Sports|"
         "Clothing|Beauty"),
        ("supplier", "", 10, "supplier_id pk; name combo:" + A + "/Traders|Wholesale; country country"),
        ("product", "", 40, "product_id pk; name combo:" + A + "/Lamp|Chair|Kettle|Drone|Racket|Jacket|Novel;"
         " category_id fk:category; supplier_id fk:supplier; price real:3:900 ~expensive,cheap; stock int:0:250"),
        ("store", "", 10, "store_id pk; name combo:Downtown|Mall|Airport|Harbor|Uptown/Shop|Outlet; city city;"
         " opened_date date:2000:2020; area int:200:3000"),
        ("customer", "", 35, "customer_id pk; name person; city city; loyalty_points int:0:5000"),
        ("purchase", "", 90, "purchase_id pk; customer_id fk:customer; product_id fk:product; "
         "store_id fk:store; quantity int:1:12 ~bulk,single; purchase_date date:2022:2023"),
    ],
    "library": [
        ("author", "", 20, "author_id pk; name person; nationality country; birth_year int:1920:1995"),
        ("book", "", 45, "book_id pk; title combo:" + A + "/Garden|House|Letters|Island|Winter; author_id fk:author; "
         "pages int:90:900 ~long,short; published_year int:1950:2023; "
         "genre pick:Mystery|Fantasy|Biography|Science|Romance|History"),
        ("member", "", 35, "member_id pk; name person; city city; join_date date:2010:2023; age int:8:85"),
        ("loan", "", 80, "loan_id pk; book_id fk:book; member_id fk:member; loan_date date:2022:2023; "
         "days_kept int:1:60 ~overdue,prompt"),
    ],
    "sports_league": [
        ("team", "", 12, "team_id pk; name combo:" + A + "/Hawks|Wolves|Rovers|Titans; city city; "
         "founded_year int:1890:2010; stadium_capacity int:8000:80000"),
        ("player", "", 60, "player_id pk; name person; team_id fk:team; position pick:Goalkeeper|Defender|"
         "Midfielder|Forward; age int:17:39 ~veteran,young; salary int:40000:2000000"),
        ("game", "", 40, "game_id pk; home_team_id fk:team; away_team_id fk:team; game_date date:2022:2023; "
         "attendance int:3000:78000 ~sold-out,sparse"),
        ("goal", "", 70, "goal_id pk; game_id fk:game; player_id fk:player; minute int:1:90"),
    ],
    "restaurant": [
        ("restaurant", "", 18, "restaurant_id pk; name combo:" + A + "/Bistro|Grill|Kitchen|Table; city city; "
         "cuisine pick:Italian|Thai|Mexican|French|Indian|Japanese; seats int:20:200"),
        ("dish", "dishes", 50, "dish_id pk; name combo:" + A + "/Curry|Pasta|Taco|Soup|Salad|Ramen|Tart; "
         "restaurant_id fk:restaurant; price real:4:48 ~pricey,cheap; vegetarian bool"),
        ("critic", "", 15, "critic_id pk; name person; outlet pick:Daily Post|Food Weekly|City Guide|Gazette"),
        ("review", "", 60, "review_id pk; restaurant_id fk:restaurant; critic_id fk:critic; "
         "stars int:1:5 ~glowing,poor; review_date date:2019:2023"),
    ],
    "cinema": [
        ("director", "", 15, "director_id pk; name person; country country; birth_year int:1940:1990"),
        ("movie", "", 40, "movie_id pk; title combo:" + A + "/Storm|Harbor|Mirror|Empire|Garden|Voyage; "
         "director_id fk:director; release_year int:1975:2023; running_time int:80:190 ~long,short; "
         "budget real:1:250"),
        ("theater", "", 10, "theater_id pk; name combo:Rex|Odeon|Lumiere|Roxy|Palace/Cinema|Screens; city city;"
         " screens int:1:16"),
        ("screening", "", 70, "screening_id pk; movie_id fk:movie; theater_id fk:theater; "
         "screening_date date:2023:2023; tickets_sold int:5:400 ~popular,unpopular"),
    ],
    "hotel": [
        ("hotel", "", 12, "hotel_id pk; name combo:" + A + "/Inn|Lodge|Suites; city city; stars int:1:5"),
        ("room", "", 50, "room_id pk; hotel_id fk:hotel; room_number int:100:999; room_type pick:Single|Double|"
         "Suite|Family; nightly_rate real:45:600 ~luxury,budget"),
        ("guest", "", 40, "guest_id pk; name person; country country; age int:18:85"),
        ("reservation", "", 75, "reservation_id pk; room_id fk:room; guest_id fk:guest; check_in date:2023:2023;"
         " nights int:1:14 ~long,short"),
    ],
    "bank": [
        ("branch", "branches", 8, "branch_id pk; name combo:Central|Harbor|Market|Park/Branch|Office; "
         "city city; opened_year int:1950:2020"),
        ("client", "", 40, "client_id pk; name person; city city; age int:18:90 ~senior,young; "
         "credit_score int:300:850"),
        ("account", "", 55, "account_id pk; client_id fk:client; branch_id fk:branch; account_type pick:Checking|"
         "Savings|Business; balance real:0:90000 ~wealthy,low-balance"),
        ("transfer", "", 80, "transfer_id pk; account_id fk:account; amount real:5:5000; "
         "transfer_date date:2023:2023; channel pick:Online|ATM|Teller"),
    ],
    "research_lab": [
        ("lab", "", 8, "lab_id pk; name uniq:Robotics|Genomics|Climate|Vision|Materials|Quantum|Neuro|Ocean; "
         "building pick:A|B|C|D; funding int:100000:5000000 ~well-funded,underfunded"),
        ("researcher", "", 30, "researcher_id pk; name person; lab_id fk:lab; title pick:Professor|Postdoc|"
         "PhD Student|Engineer; h_index int:0:80"),
        ("project", "", 25, "project_id pk; name combo:Project/" + A + "; lab_id fk:lab; start_year int:2010:2023;"
         " budget int:20000:900000"),
        ("publication", "", 60, "publication_id pk; researcher_id fk:researcher; project_id fk:project; "
         "year int:2012:2023; citations int:0:900 ~influential,uncited; venue pick:Nature|Science|NeurIPS|"
         "ICML|Cell|PNAS"),
    ],
    "car_rental": [
        ("location", "", 10, "location_id pk; city city; address combo:1|12|45|88|120/Main St|Oak Ave|Pine Rd; "
         "capacity int:10:120"),
        ("car", "", 40, "car_id pk; plate uniq:" + "|".join(f"CR-{n}" for n in range(1001, 1061)) + "; "
         "make pick:Toyota|Ford|Honda|BMW|Kia|Tesla|Fiat; model_year int:2012:2024; location_id fk:location; "
         "daily_rate real:25:180 ~premium,economy"),
        ("renter", "", 35, "renter_id pk; name person; age int:21:80; license_country country"),
        ("rental", "", 70, "rental_id pk; car_id fk:car; renter_id fk:renter; start_date date:2023:2023; "
         "days int:1:21 ~long,short; total_cost real:30:3500"),
    ],
    "gym": [
        ("trainer", "", 10, "trainer_id pk; name person; specialty pick:Yoga|Boxing|Pilates|Spin|Strength; "
         "years_experience int:1:25"),
        ("fitness_class", "fitness classes", 20, "class_id pk; name combo:Morning|Evening|Power|Gentle/Yoga|"
         "Spin|Boxing|Core; trainer_id fk:trainer; capacity int:8:40; duration int:30:90 ~long,short"),
        ("member", "", 45, "member_id pk; name person; age int:16:75 ~senior,young; membership pick:Basic|Plus|"
         "Premium; join_date date:2015:2023"),
        ("attendance", "", 90, "attendance_id pk; member_id fk:member; class_id fk:fitness_class; "
         "visit_date date:2023:2023; calories int:100:900"),
    ],
    "zoo": [
        ("zone", "", 6, "zone_id pk; name uniq:Savanna|Rainforest|Arctic|Desert|Aquarium|Aviary; area int:500:9000"),
        ("species", "species", 20, "species_id pk; common_name uniq:Lion|Zebra|Penguin|Tiger|Giraffe|Otter|"
         "Parrot|Camel|Seal|Gorilla|Koala|Flamingo|Rhino|Lemur|Owl|Panda|Wolf|Elephant|Toucan|Bison; "
         "zone_id fk:zone; diet pick:Carnivore|Herbivore|Omnivore; conservation pick:Least Concern|Vulnerable|"
         "Endangered"),
        ("keeper", "", 14, "keeper_id pk; name person; hire_year int:1995:2023; zone_id fk:zone"),
        ("animal", "", 55, "animal_id pk; name uniq:" + "|".join(FIRST) + "|Biscuit|Shadow|Pepper|Ziggy|Mango|"
         "Luna|Kiwi|Maple|Coco|Ruby|Bruno|Nala|Simba|Tank|Echo; species_id fk:species; keeper_id fk:keeper; "
         "age int:1:40 ~elderly,juvenile; weight real:0.5:5000"),
    ],
    "farm": [
        ("farm", "", 12, "farm_id pk; name combo:" + A + "/Acres|Fields|Ranch; region pick:North|South|East|West;"
         " hectares int:20:900 ~large,small"),
        ("crop", "", 12, "crop_id pk; name uniq:Wheat|Corn|Barley|Soy|Rice|Oats|Potato|Tomato|Canola|Rye|"
         "Lentil|Sorghum; season pick:Spring|Summer|Autumn"),
        ("harvest", "", 60, "harvest_id pk; farm_id fk:farm; crop_id fk:crop; year int:2018:2023; "
         "tonnes real:1:900; price_per_tonne real:80:600"),
    ],
    "museum": [
        ("museum", "", 10, "museum_id pk; name combo:" + A + "/Gallery|Museum; city city; founded_year int:1800:2015;"
         " annual_visitors int:10000:3000000 ~major,minor"),
        ("painter", "", 20, "painter_id pk; name person; nationality country; birth_year int:1600:1980"),
        ("artwork", "", 50, "artwork_id pk; title combo:" + A + "/Portrait|Landscape|Harbor|Still Life|Study;"
         " painter_id fk:painter; museum_id fk:museum; year int:1650:2020; value real:0.1:90 ~priceless,modest;"
         " medium pick:Oil|Watercolor|Ink|Acrylic"),
        ("exhibition", "", 25, "exhibition_id pk; museum_id fk:museum; title combo:Visions of|Masters of|"
         "Light and/Color|Form|Time|Water; start_date date:2018:2023; tickets_sold int:500:90000"),
    ],
    "conference": [
        ("venue", "", 8, "venue_id pk; name combo:Convention|Expo|Congress/Center|Hall; city city; "
         "capacity int:300:8000"),
        ("conference", "", 16, "conference_id pk; name combo:ACL|KDD|CVPR|ICSE|SIGMOD|VLDB|AAAI|EMNLP/2021|2022|"
         "2023; venue_id fk:venue; year int:2021:2023; attendees int:200:9000 ~large,small"),
        ("author", "", 40, "author_id pk; name person; affiliation pick:MIT|ETH|Oxford|Tsinghua|KAIST|EPFL|CMU;"
         " country country"),
        ("paper", "", 50, "paper_id pk; title combo:Learning|Scaling|Parsing|Indexing|Probing/" + A + " Graphs|"
         "Queries|Models; conference_id fk:conference; pages int:4:14; citations int:0:600 ~highly-cited,"
         "uncited"),
        ("authorship", "", 90, "authorship_id pk; paper_id fk:paper; author_id fk:author; position int:1:6"),
    ],
    "real_estate": [
        ("agent", "", 12, "agent_id pk; name person; agency pick:Keystone|Harbor Homes|Urban Nest|Acre Realty; "
         "years_active int:1:30"),
        ("property", "properties", 45, "property_id pk; address combo:2|14|31|57|76|93|110/Elm St|Cedar Ln|"
         "Birch Rd|Maple Ave; city city; bedrooms int:1:6; area int:40:400 ~spacious,compact; "
         "property_type pick:House|Condo|Townhouse"),
        ("buyer", "", 30, "buyer_id pk; name person; budget int:100000:2000000"),
        ("sale", "", 40, "sale_id pk; property_id fk:property; agent_id fk:agent; buyer_id fk:buyer; "
         "sale_price int:90000:2500000 ~luxury,affordable; sale_date date:2020:2023"),
    ],
    "logistics": [
        ("warehouse", "", 8, "warehouse_id pk; name combo:North|South|East|West/Depot|Hub; city city; "
         "capacity int:1000:50000"),
        ("supplier", "", 14, "supplier_id pk; name combo:" + A + "/Supply|Trading|Goods; country country; "
         "rating real:1:5"),
        ("item", "", 40, "item_id pk; name combo:Steel|Copper|Plastic|Wooden|Glass/Pipe|Crate|Panel|Valve|"
         "Bolt|Sheet; supplier_id fk:supplier; unit_cost real:0.5:300 ~costly,cheap; weight_kg real:0.1:80"),
        ("shipment", "", 80, "shipment_id pk; item_id fk:item; warehouse_id fk:warehouse; quantity int:1:500; "
         "ship_date date:2023:2023; delayed bool"),
    ],
    "theater": [
        ("playwright", "", 14, "playwright_id pk; name person; country country; birth_year int:1560:1985"),
        ("play", "", 25, "play_id pk; title combo:" + A + "/Door|Mask|Crown; "
         "playwright_id fk:playwright; premiere_year int:1600:2020; acts int:1:5"),
        ("actor", "", 40, "actor_id pk; name person; age int:18:80 ~veteran,young; agency pick:Stage One|"
         "Limelight|Curtain Call"),
        ("casting", "", 70, "casting_id pk; play_id fk:play; actor_id fk:actor; role pick:Lead|Supporting|Chorus;"
         " fee int:500:20000"),
    ],
    "election": [
        ("party", "parties", 6, "party_id pk; name uniq:Green|Labour|Liberal|Unity|Progress|Heritage; "
         "founded_year int:1890:2015; ideology pick:Left|Centre|Right"),
        ("region", "", 12, "region_id pk; name uniq:Northshire|Eastvale|Westmoor|Southby|Highland|Lowfield|"
         "Riverside|Lakeside|Hillcrest|Bayview|Stonebridge|Fairmont; population int:40000:2000000 ~populous,"
         "sparse"),
        ("candidate", "", 40, "candidate_id pk; name person; party_id fk:party; region_id fk:region; "
         "age int:25:80"),
        ("vote_result", "", 40, "result_id pk; candidate_id fk:candidate; votes int:500:90000; "
         "share real:1:70; elected bool"),
    ],
    "company_hr": [
        ("department", "", 8, "department_id pk; name uniq:Sales|Marketing|Finance|Legal|Engineering|Support|"
         "Operations|Research; location city"),
        ("employee", "", 50, "employee_id pk; name person; department_id fk:department; salary int:30000:180000"
         " ~high-earning,low-earning; hire_date date:2005:2023; job_title pick:Analyst|Manager|Engineer|"
         "Assistant|Director"),
        ("project", "", 15, "project_id pk; name combo:Apollo|Orion|Atlas|Hermes|Zeus/Alpha|Beta|Launch; "
         "budget int:10000:900000; deadline date:2024:2025"),
        ("assignment", "", 70, "assignment_id pk; employee_id fk:employee; project_id fk:project; "
         "hours int:5:400; role pick:Lead|Member|Reviewer"),
    ],
    "pet_clinic": [
        ("owner", "", 30, "owner_id pk; name person; city city; phone_plan pick:Basic|Plus"),
        ("pet", "", 45, "pet_id pk; name uniq:Max|Bella|Charlie|Lucy|Cooper|Daisy|Milo|Luna|Rocky|Sadie|Bear|"
         "Molly|Tucker|Lola|Buddy|Zoe|Duke|Chloe|Jack|Maggie|Oliver|Sophie|Toby|Penny|Leo|Rosie|Finn|Ruby|"
         "Ollie|Stella|Gus|Willow|Bruno|Hazel|Oscar|Pepper|Louie|Ginger|Teddy|Coco|Rex|Nala|Ziggy|Mocha|Scout;"
         " owner_id fk:owner; species pick:Dog|Cat|Rabbit|Parrot; age int:1:18 ~old,young; weight real:0.2:60"),
        ("vet", "", 10, "vet_id pk; name person; specialty pick:Surgery|Dentistry|General|Dermatology"),
        ("visit", "", 80, "visit_id pk; pet_id fk:pet; vet_id fk:vet; visit_date date:2022:2023; "
         "fee real:30:800 ~costly,cheap; reason pick:Checkup|Vaccination|Injury|Illness"),
    ],
    "orchestra": [
        ("conductor", "", 12, "conductor_id pk; name person; nationality country; age int:30:85"),
        ("orchestra", "", 10, "orchestra_id pk; name combo:" + A + "/Philharmonic|Symphony; city city; "
         "founded_year int:1840:2010; conductor_id fk:conductor"),
        ("concert", "", 40, "concert_id pk; orchestra_id fk:orchestra; concert_date date:2022:2023; "
         "program pick:Beethoven|Mahler|Brahms|Debussy|Bach|Sibelius; audience int:200:2500 ~full,thin"),
        ("soloist", "", 20, "soloist_id pk; name person; instrument pick:Piano|Violin|Cello|Flute|Horn"),
        ("appearance", "", 50, "appearance_id pk; concert_id fk:concert; soloist_id fk:soloist; fee int:1000:40000"),
    ],
    "winery": [
        ("region", "", 8, "region_id pk; name uniq:Napa|Rioja|Bordeaux|Tuscany|Mendoza|Barossa|Douro|Mosel; "
         "country country"),
        ("winery", "wineries", 16, "winery_id pk; name combo:" + A + "/Estate|Vineyards|Cellars; "
         "region_id fk:region; founded_year int:1850:2015"),
        ("wine", "", 50, "wine_id pk; name combo:Reserve|Classic|Old Vine|Estate|Single Barrel/Merlot|Syrah|"
         "Riesling|Malbec|Tempranillo|Chardonnay; winery_id fk:winery; vintage int:2005:2022; "
         "price real:8:250 ~premium,budget; color pick:Red|White|Rose"),
        ("tasting", "", 60, "tasting_id pk; wine_id fk:wine; taster person; score int:70:100 ~outstanding,"
         "mediocre"),
    ],
    "railway": [
        ("station", "", 18, "station_id pk; name combo:" + A + "/Central|Junction|Park; city city; "
         "platforms int:1:20 ~major,minor"),
        ("train", "", 20, "train_id pk; code uniq:" + "|".join(f"IC{n}" for n in range(200, 230)) + "; "
         "train_type pick:Express|Regional|Night; top_speed int:90:320; operator pick:RailCo|MetroLink|"
         "EuroRail"),
        ("stop", "", 80, "stop_id pk; train_id fk:train; station_id fk:station; stop_order int:1:12; "
         "dwell_minutes int:1:15"),
    ],
    "publishing": [
        ("publisher", "", 8, "publisher_id pk; name combo:" + A + "/Press|Books; city city; "
         "founded_year int:1850:2015"),
        ("writer", "", 25, "writer_id pk; name person; country country; birth_year int:1930:1995"),
        ("title", "", 50, "title_id pk; name combo:" + A + "/Secrets|Letters|Winters|Maps|Tides|Rooms; "
         "writer_id fk:writer; publisher_id fk:publisher; year int:1980:2023; copies_sold int:1000:2000000"
         " ~bestselling,niche; price real:5:60"),
    ],
    "tv_network": [
        ("network", "", 6, "network_id pk; name uniq:ABN|Channel Nine|StarTV|Vista|NorthNet|Prime One; "
         "country country; launch_year int:1950:2015"),
        ("show", "", 20, "show_id pk; title combo:" + A + "/Detectives|Kitchen|Frontier|Hospital|Family; "
         "network_id fk:network; genre pick:Drama|Comedy|Reality|Crime; first_aired_year int:1995:2022"),
        ("episode", "", 80, "episode_id pk; show_id fk:show; season int:1:8; episode_number int:1:22; "
         "viewers real:0.2:18 ~hit,low-rated; air_date date:2018:2023"),
    ],
    "marathon": [
        ("race", "", 10, "race_id pk; name combo:" + "|".join(CITIES[:10]) + "/Marathon; race_date date:2022:2023;"
         " course_elevation int:10:900"),
        ("runner", "", 45, "runner_id pk; name person; country country; age int:18:75 ~masters,junior; "
         "gender pick:F|M"),
        ("result", "", 90, "result_id pk; race_id fk:race; runner_id fk:runner; finish_minutes int:125:390 "
         "~slow,fast; place int:1:500"),
    ],
    "video_game": [
        ("studio", "", 10, "studio_id pk; name combo:" + A + "/Games|Interactive; country country; "
         "employees int:10:3000 ~large,indie"),
        ("game", "", 30, "game_id pk; title combo:" + A + "/Quest|Legends|Racer|Tactics|Odyssey; "
         "studio_id fk:studio; release_year int:2005:2023; genre pick:RPG|Shooter|Puzzle|Racing|Strategy; "
         "price real:0:70"),
        ("gamer", "", 40, "gamer_id pk; handle uniq:" + "|".join(f"{a.lower()}_{b}" for a in ADJ[:8]
                                                                 for b in ("fox", "owl", "wolf", "cat", "bee"))
         + "; country country; age int:12:60"),
        ("play_session", "", 90, "session_id pk; gamer_id fk:gamer; game_id fk:game; hours real:0.5:12 "
         "~marathon,brief; session_date date:2023:2023"),
    ],
    "charity": [
        ("donor", "", 35, "donor_id pk; name person; city city; donor_type pick:Individual|Company|Foundation"),
        ("campaign", "", 12, "campaign_id pk; name combo:Clean|Safe|Bright|Green/Water|Schools|Futures|Parks; "
         "goal int:5000:500000; start_date date:2020:2023; cause pick:Education|Health|Environment"),
        ("donation", "", 80, "donation_id pk; donor_id fk:donor; campaign_id fk:campaign; amount real:5:20000 "
         "~major,small; donation_date date:2020:2023"),
    ],
    "insurance": [
        ("agent", "", 10, "agent_id pk; name person; office city"),
        ("policyholder", "", 35, "holder_id pk; name person; age int:18:90 ~senior,young; city city; "
         "agent_id fk:agent"),
        ("policy", "policies", 50, "policy_id pk; holder_id fk:policyholder; policy_type pick:Auto|Home|Life|"
         "Travel; premium real:100:4000 ~expensive,cheap; start_date date:2015:2023"),
        ("claim", "", 60, "claim_id pk; policy_id fk:policy; claim_date date:2019:2023; amount real:100:60000; "
         "approved bool"),
    ],
    "mountaineering": [
        ("mountain", "", 18, "mountain_id pk; name uniq:Everest|K2|Denali|Aconcagua|Elbrus|Kilimanjaro|Vinson|"
         "Matterhorn|Eiger|Annapurna|Lhotse|Makalu|Rainier|Fuji|Kenya|Olympus|Blanc|Cook; "
         "height int:2000:8849 ~high,low; country country"),
        ("climber", "", 35, "climber_id pk; name person; nationality country; age int:19:70"),
        ("expedition", "", 40, "expedition_id pk; mountain_id fk:mountain; leader_id fk:climber; "
         "year int:1990:2023; team_size int:2:20; success bool"),
        ("expedition_member", "", 80, "member_id pk; expedition_id fk:expedition; climber_id fk:climber; "
         "role pick:Leader|Guide|Climber|Medic"),
    ],
    "weather": [
        ("station", "", 15, "station_id pk; name combo:" + "|".join(CITIES[:15]) + "/Airport|Harbor; "
         "elevation int:0:2400 ~high-altitude,low-lying; climate pick:Arid|Temperate|Tropical|Polar"),
        ("reading", "", 90, "reading_id pk; station_id fk:station; reading_date date:2023:2023; "
         "temperature real:-25:42 ~hot,cold; rainfall real:0:80; wind_speed int:0:120"),
    ],
    "airline_crew": [
        ("base", "", 6, "base_id pk; city city; opened_year int:1970:2015"),
        ("pilot", "", 30, "pilot_id pk; name person; base_id fk:base; flight_hours int:500:25000 ~senior,"
         "junior; rank pick:Captain|First Officer"),
        ("aircraft", "aircraft", 20, "aircraft_id pk; tail_number uniq:" + "|".join(f"N{n}AX" for n in range(300, 330))
         + "; model pick:A320|B737|A350|B787|E190; seats int:90:350; base_id fk:base"),
        ("duty", "duties", 70, "duty_id pk; pilot_id fk:pilot; aircraft_id fk:aircraft; duty_date date:2023:2023;"
         " hours real:1:14"),
    ],
}

DEV_DBS = ("hospital", "cinema", "zoo", "winery", "real_estate")
TEST_DBS = ("school", "bank", "gym", "marathon", "insurance")

# ------------------------------------------------------------------------------------------------------------
# Features (regexes on the SQL; `evidence` is a field, not SQL)
# ------------------------------------------------------------------------------------------------------------

FEATURES: dict[str, str] = {
    "join_2": r"^(?!.*\bJOIN\b.*\bJOIN\b).*\bJOIN\b",
    "join_3": r"^(?!.*\bJOIN\b.*\bJOIN\b.*\bJOIN\b).*\bJOIN\b.*\bJOIN\b",
    "join_4": r"\bJOIN\b.*\bJOIN\b.*\bJOIN\b",
    "alias_T1_T2": r"\bAS T1\b.*\bAS T2\b",
    "group_by": r"\bGROUP BY\b",
    "having": r"\bHAVING\b",
    "order_by_limit": r"\bORDER BY\b.*\bLIMIT\b",
    "in_subquery": r"(?<!NOT )\bIN \(SELECT\b",
    "not_in_subquery": r"\bNOT IN \(SELECT\b",
    "scalar_subquery": r"(?:[<>]=?|=) \(SELECT\b",
    "intersect": r"\bINTERSECT\b",
    "union": r"\bUNION\b",
    "except": r"\bEXCEPT\b",
    "count": r"\bcount\(",
    "sum": r"\bsum\(",
    "avg": r"\bavg\(",
    "min": r"\bmin\(",
    "max": r"\bmax\(",
    "like": r"\bLIKE\b",
    "between": r"\bBETWEEN\b",
    "in_list": r"\bIN \('",
    "distinct": r"\bDISTINCT\b",
}


def features_of(query: str) -> list[str]:
    return [name for name, pattern in FEATURES.items() if re.search(pattern, query)]


# ------------------------------------------------------------------------------------------------------------
# Schema model
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Column:
    name: str
    kind: str
    args: list[str]
    words: tuple[str, str] | None = None  # evidence words for (>= threshold, < threshold)

    @property
    def sql_type(self) -> str:
        return {"pk": "INTEGER", "fk": "INTEGER", "int": "INTEGER", "year": "INTEGER", "real": "REAL", "date": "DATE",
                "bool": "BOOLEAN"}.get(self.kind, "TEXT")

    @property
    def spider_type(self) -> str:
        return {"INTEGER": "number", "REAL": "number", "DATE": "time", "BOOLEAN": "boolean"}.get(self.sql_type,
                                                                                                 "text")

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "real", "year")

    @property
    def aggs(self) -> list[str]:
        """The aggregates a question may ask of this column (years have a minimum, not a total)."""
        return ["max", "min"] if self.kind == "year" else list(AGG_WORDS)

    @property
    def categorical(self) -> bool:
        return self.kind in ("pick", "city", "country")

    @property
    def unique_text(self) -> bool:
        return self.kind in ("person", "uniq", "combo")


@dataclass
class TableSpec:
    name: str
    plural_name: str
    rows: int
    columns: list[Column]
    data: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def singular(self) -> str:
        return natural(self.name)

    @property
    def label(self) -> Column | None:
        return next((c for c in self.columns if c.unique_text), None)

    def col(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def pk(self) -> Column:
        return self.columns[0]

    def values(self, column: Column) -> list[Any]:
        i = self.columns.index(column)
        return [row[i] for row in self.data]


@dataclass
class Edge:
    child: TableSpec
    fk: Column
    parent: TableSpec

    ambiguous: bool = False  # the child has another foreign key to the same parent (origin / destination)

    @property
    def role(self) -> str:
        """How a question names the parent seen from the child: `origin airport` for origin_airport_id."""
        return natural(self.fk.name.removesuffix("_id"))

    @property
    def parents(self) -> str:
        """The parent table's rows in a question: `destination airports` where `airports` is ambiguous."""
        return plural(self.role) if self.ambiguous else self.parent.plural_name


def natural(name: str) -> str:
    return name.replace("_", " ")


def plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in tuple("aeiou"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def parse_spec(db_id: str) -> list[TableSpec]:
    tables = []
    for name, plural_name, rows, text in SPECS[db_id]:
        columns = []
        for part in text.split(";"):
            part = part.strip()
            words = None
            if " ~" in part:
                part, w = part.split(" ~")
                hi, lo = w.split(",")
                words = (hi.strip(), lo.strip())
            col_name, spec = part.split(" ", 1)
            kind, _, rest = spec.partition(":")
            args = rest.split(":") if kind in ("int", "real", "date", "fk") else ([rest] if rest else [])
            if kind == "int" and re.search(r"(?:^|_)(?:year|vintage)$", col_name):
                kind = "year"  # a number, but one nobody sums or averages
            columns.append(Column(col_name, kind, args, words))
        assert columns[0].kind == "pk", f"{db_id}.{name}: first column must be the primary key"
        tables.append(TableSpec(name, plural_name or plural(natural(name)), rows, columns))
    return tables


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------


def unique_pool(column: Column) -> list[str]:
    if column.kind == "uniq":
        return column.args[0].split("|")
    if column.kind == "combo":
        left, right = column.args[0].split("/")
        return [f"{a} {b}" for a in left.split("|") for b in right.split("|")]
    return [f"{a} {b}" for a in FIRST for b in LAST]


def fill(r: random.Random, tables: list[TableSpec]) -> None:
    by_name = {t.name: t for t in tables}
    for t in tables:
        n = t.rows
        for c in t.columns:
            if c.kind in ("uniq", "combo"):
                n = min(n, len(unique_pool(c)))
        pools: dict[str, list[Any]] = {}
        for c in t.columns:
            if c.unique_text:
                pools[c.name] = r.sample(unique_pool(c), n)
            elif c.kind == "fk":
                parent_ids = [row[0] for row in by_name[c.args[0]].data]
                # Some parents get no child (so NOT IN questions have answers); the rest repeat.
                used = r.sample(parent_ids, max(1, round(len(parent_ids) * 0.8)))
                pools[c.name] = [r.choice(used) for _ in range(n)]
        rows = []
        for i in range(n):
            row: list[Any] = []
            for c in t.columns:
                if c.kind == "pk":
                    v: Any = i + 1
                elif c.name in pools:
                    v = pools[c.name][i]
                elif c.kind in ("int", "year"):
                    v = r.randint(int(c.args[0]), int(c.args[1]))
                elif c.kind == "real":
                    v = round(r.uniform(float(c.args[0]), float(c.args[1])), 2)
                elif c.kind == "date":
                    start = date(int(c.args[0]), 1, 1)
                    span = (date(int(c.args[1]), 12, 31) - start).days
                    v = (start + timedelta(days=r.randint(0, span))).isoformat()
                elif c.kind == "bool":
                    v = r.randint(0, 1)
                elif c.kind == "pick":
                    v = r.choice(c.args[0].split("|"))
                elif c.kind == "city":
                    v = r.choice(CITIES[:18] if r.random() < 0.7 else CITIES)
                elif c.kind == "country":
                    v = r.choice(COUNTRIES)
                elif c.kind == "first":
                    v = r.choice(FIRST)
                elif c.kind == "last":
                    v = r.choice(LAST)
                else:
                    raise ValueError(f"{t.name}.{c.name}: unknown kind {c.kind!r}")
                row.append(v)
            rows.append(tuple(row))
        t.data = rows


def create_statement(t: TableSpec, by_name: dict[str, TableSpec]) -> str:
    lines = []
    for c in t.columns:
        lines.append(f"  {c.name} {c.sql_type}" + (" PRIMARY KEY" if c.kind == "pk" else "")
                     + (" NOT NULL" if c.kind == "fk" else ""))
    for c in t.columns:
        if c.kind == "fk":
            parent = by_name[c.args[0]]
            lines.append(f"  FOREIGN KEY ({c.name}) REFERENCES {parent.name}({parent.pk.name})")
    return f"CREATE TABLE {t.name} (\n" + ",\n".join(lines) + "\n)"


def write_database(path: Path, tables: list[TableSpec]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    by_name = {t.name: t for t in tables}
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA page_size=1024")
        conn.execute("PRAGMA foreign_keys=ON")
        for t in tables:
            conn.execute(create_statement(t, by_name))
            marks = ", ".join("?" * len(t.columns))
            conn.executemany(f"INSERT INTO {t.name} VALUES ({marks})", t.data)
        conn.commit()
        check(not conn.execute("PRAGMA foreign_key_check").fetchall(), f"{path}: foreign key violation")
        conn.execute("VACUUM")
    finally:
        conn.close()


def schema_json(db_id: str, tables: list[TableSpec]) -> dict[str, Any]:
    cols_orig: list[list[Any]] = [[-1, "*"]]
    cols_nat: list[list[Any]] = [[-1, "*"]]
    types = ["text"]
    index: dict[tuple[str, str], int] = {}
    pks = []
    for ti, t in enumerate(tables):
        for c in t.columns:
            index[(t.name, c.name)] = len(cols_orig)
            if c.kind == "pk":
                pks.append(len(cols_orig))
            cols_orig.append([ti, c.name])
            cols_nat.append([ti, natural(c.name)])
            types.append(c.spider_type)
    fks = [[index[(t.name, c.name)], index[(c.args[0], next(p for p in tables if p.name == c.args[0]).pk.name)]]
           for t in tables for c in t.columns if c.kind == "fk"]
    return {"column_names": cols_nat, "column_names_original": cols_orig, "column_types": types, "db_id": db_id,
            "foreign_keys": fks, "primary_keys": pks, "table_names": [natural(t.name) for t in tables],
            "table_names_original": [t.name for t in tables]}


# ------------------------------------------------------------------------------------------------------------
# Questions
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Cand:
    template: str
    question: str
    query: str
    evidence: str | None = None


def articles(question: str) -> str:
    """`a age` -> `an age` (templates write `a {column}`; `u` words here read `a unit`)."""
    return re.sub(r"\ba (?=[aeioAEIO])", "an ", question)


def lit(v: Any) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return fmt(v)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return str(v)


AGG_WORDS = {"avg": "average", "max": "maximum", "min": "minimum", "sum": "total"}


def edges_of(tables: list[TableSpec]) -> list[Edge]:
    by_name = {t.name: t for t in tables}
    edges = [Edge(t, c, by_name[c.args[0]]) for t in tables for c in t.columns if c.kind == "fk"]
    for e in edges:
        e.ambiguous = sum(o.child is e.child and o.parent is e.parent for o in edges) > 1
    return edges


def paths(edges: list[Edge], length: int) -> Iterator[list[tuple[TableSpec, Edge | None]]]:
    """Simple paths of `length` tables along foreign keys (either direction): [(table, edge to previous)]."""
    def extend(path: list[tuple[TableSpec, Edge | None]]) -> Iterator[list[tuple[TableSpec, Edge | None]]]:
        if len(path) == length:
            yield path
            return
        last = path[-1][0]
        seen = [t.name for t, _ in path]
        for e in edges:
            for here, there in ((e.child, e.parent), (e.parent, e.child)):
                if here is last and there.name not in seen:
                    yield from extend([*path, (there, e)])
    tables = []
    for e in edges:
        for t in (e.child, e.parent):
            if t not in tables:
                tables.append(t)
    for t in tables:
        yield from extend([(t, None)])


def join_clause(path: list[tuple[TableSpec, Edge | None]]) -> str:
    parts = [f"{path[0][0].name} AS T1"]
    for i in range(1, len(path)):
        t, e = path[i]
        assert e is not None
        alias = {path[j][0].name: f"T{j + 1}" for j in range(i + 1)}
        parts.append(f"JOIN {t.name} AS T{i + 1} ON {alias[e.child.name]}.{e.fk.name} = "
                     f"{alias[e.parent.name]}.{e.parent.pk.name}")
    return " ".join(parts)


def quantile_value(values: list[Any], q: float) -> Any:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def round_threshold(v: Any) -> Any:
    """A round-looking threshold near v (thresholds in questions look like a person chose them)."""
    if isinstance(v, float):
        return round(v) if v >= 10 else round(v, 1)
    for step in (1000, 100, 10, 5, 1):
        if abs(v) >= step * 20 or step == 1:
            return int(round(v / step) * step)
    return v


def single_table(r: random.Random, t: TableSpec) -> Iterator[Cand]:
    lab = t.label
    nums = [c for c in t.columns if c.numeric]
    cats = [c for c in t.columns if c.categorical]
    dates = [c for c in t.columns if c.kind == "date"]
    P, S = t.plural_name, t.singular
    yield Cand("count", r.choice([f"How many {P} are there?", f"Count the number of {P}."]),
               f"SELECT count(*) FROM {t.name}")
    for n in nums:
        agg = r.choice(n.aggs)
        yield Cand("agg", f"What is the {AGG_WORDS[agg]} {natural(n.name)} of all {P}?",
                   f"SELECT {agg}({n.name}) FROM {t.name}")
        yield Cand("agg_minmax", f"What are the maximum and minimum {natural(n.name)} of {P}?",
                   f"SELECT max({n.name}), min({n.name}) FROM {t.name}")
        for c in cats:
            v = r.choice(t.values(c))
            agg = r.choice([a for a in ("avg", "max", "sum") if a in n.aggs])
            yield Cand("agg_where", f"What is the {AGG_WORDS[agg]} {natural(n.name)} of {P} whose "
                       f"{natural(c.name)} is {v}?", f"SELECT {agg}({n.name}) FROM {t.name} WHERE {c.name} = {lit(v)}")
            agg = r.choice(n.aggs)
            yield Cand("group_agg", f"Show each {natural(c.name)} and the {AGG_WORDS[agg]} {natural(n.name)} of "
                       f"{P} with that {natural(c.name)}.",
                       f"SELECT {c.name}, {agg}({n.name}) FROM {t.name} GROUP BY {c.name}")
            hi = round_threshold(quantile_value(t.values(n), 0.65))
            lo = round_threshold(quantile_value(t.values(n), 0.35))
            yield Cand("intersect", f"Which {natural(c.name)} values have both {P} with {natural(n.name)} above "
                       f"{fmt(hi)} and {P} with {natural(n.name)} below {fmt(lo)}?",
                       f"SELECT {c.name} FROM {t.name} WHERE {n.name} > {lit(hi)} INTERSECT "
                       f"SELECT {c.name} FROM {t.name} WHERE {n.name} < {lit(lo)}")
            top = round_threshold(quantile_value(t.values(n), 0.8))
            yield Cand("except", f"Which {natural(c.name)} values have no {S} with {natural(n.name)} above "
                       f"{fmt(top)}?", f"SELECT {c.name} FROM {t.name} EXCEPT SELECT {c.name} FROM {t.name} "
                       f"WHERE {n.name} > {lit(top)}")
    for c in cats:
        v = r.choice(t.values(c))
        yield Cand("group_count", r.choice([f"For each {natural(c.name)}, how many {P} are there?",
                                            f"Count the {P} for each {natural(c.name)}."]),
                   f"SELECT {c.name}, count(*) FROM {t.name} GROUP BY {c.name}")
        counts = sorted(t.values(c).count(x) for x in dict.fromkeys(t.values(c)))
        k = counts[len(counts) // 2]
        yield Cand("having", f"Which {natural(c.name)} values are shared by more than {k} {P}?",
                   f"SELECT {c.name} FROM {t.name} GROUP BY {c.name} HAVING count(*) > {k}")
        yield Cand("group_order", f"Which {natural(c.name)} has the most {P}?",
                   f"SELECT {c.name} FROM {t.name} GROUP BY {c.name} ORDER BY count(*) DESC LIMIT 1")
        yield Cand("distinct", r.choice([f"What are the distinct {natural(c.name)} values of {P}?",
                                         f"List the different {natural(c.name)} values of all {P}."]),
                   f"SELECT DISTINCT {c.name} FROM {t.name}")
        yield Cand("count_distinct", f"How many different {natural(c.name)} values do the {P} have?",
                   f"SELECT count(DISTINCT {c.name}) FROM {t.name}")
        yield Cand("count_where", f"How many {P} have {natural(c.name)} {v}?",
                   f"SELECT count(*) FROM {t.name} WHERE {c.name} = {lit(v)}")
        if lab:
            yield Cand("where_eq", f"List the {natural(lab.name)} of the {P} whose {natural(c.name)} is {v}.",
                       f"SELECT {lab.name} FROM {t.name} WHERE {c.name} = {lit(v)}")
            distinct = list(dict.fromkeys(t.values(c)))
            if len(distinct) >= 3:
                v1, v2 = r.sample(distinct, 2)
                yield Cand("in_list", f"Show the {natural(lab.name)} of {P} whose {natural(c.name)} is either "
                           f"{v1} or {v2}.", f"SELECT {lab.name} FROM {t.name} WHERE {c.name} IN ({lit(v1)}, "
                           f"{lit(v2)})")
            for n in nums[:2]:
                x = round_threshold(quantile_value(t.values(n), 0.85))
                yield Cand("union", f"List the {natural(lab.name)} of {P} whose {natural(c.name)} is {v} or "
                           f"whose {natural(n.name)} is greater than {fmt(x)}.",
                           f"SELECT {lab.name} FROM {t.name} WHERE {c.name} = {lit(v)} UNION "
                           f"SELECT {lab.name} FROM {t.name} WHERE {n.name} > {lit(x)}")
    if not lab:
        return
    L = natural(lab.name)
    values = t.values(lab)
    word = r.choice(values)
    piece = r.choice([w for w in word.split() if len(w) >= 3] or [word])
    if r.random() < 0.5:
        yield Cand("like", f"Which {P} have a {L} starting with '{piece[:2]}'? Give their {L}s.",
                   f"SELECT {lab.name} FROM {t.name} WHERE {lab.name} LIKE '{piece[:2]}%'")
    else:
        sub = piece[1:4].lower()
        yield Cand("like", f"Find the {L} of every {S} whose {L} contains '{sub}'.",
                   f"SELECT {lab.name} FROM {t.name} WHERE {lab.name} LIKE '%{sub}%'")
    yield Cand("list", f"List the {L} of all {P}.", f"SELECT {lab.name} FROM {t.name}")
    for n in nums:
        N = natural(n.name)
        yield Cand("order_limit", f"Which {S} has the {r.choice(['highest', 'largest'])} {N}? Give its {L}.",
                   f"SELECT {lab.name} FROM {t.name} ORDER BY {n.name} DESC LIMIT 1")
        yield Cand("order_limit", f"What is the {L} of the {S} with the lowest {N}?",
                   f"SELECT {lab.name} FROM {t.name} ORDER BY {n.name} ASC LIMIT 1")
        k = r.choice([3, 5])
        yield Cand("order_limit_k", f"List the {L} and {N} of the {k} {P} with the greatest {N}.",
                   f"SELECT {lab.name}, {n.name} FROM {t.name} ORDER BY {n.name} DESC LIMIT {k}")
        yield Cand("order_by", f"List the {L} of all {P} ordered by {N} ascending.",
                   f"SELECT {lab.name} FROM {t.name} ORDER BY {n.name}")
        x = round_threshold(quantile_value(t.values(n), r.choice([0.3, 0.5, 0.7])))
        yield Cand("where_num", f"Find the {L} of {P} with {N} greater than {fmt(x)}.",
                   f"SELECT {lab.name} FROM {t.name} WHERE {n.name} > {lit(x)}")
        a = round_threshold(quantile_value(t.values(n), 0.3))
        b = round_threshold(quantile_value(t.values(n), 0.6))
        yield Cand("between", f"Which {P} have {N} between {fmt(a)} and {fmt(b)}? Give their {L}s.",
                   f"SELECT {lab.name} FROM {t.name} WHERE {n.name} BETWEEN {lit(a)} AND {lit(b)}")
        yield Cand("scalar_subquery", f"Which {P} have a {N} above the average {N} of all {P}? List their {L}s.",
                   f"SELECT {lab.name} FROM {t.name} WHERE {n.name} > (SELECT avg({n.name}) FROM {t.name})")
        yield Cand("scalar_subquery", f"What is the {L} of the {S} with the smallest {N}?",
                   f"SELECT {lab.name} FROM {t.name} WHERE {n.name} = (SELECT min({n.name}) FROM {t.name})")
    for d in dates:
        year = r.choice(t.values(d))[:4]
        yield Cand("date_like", f"List the {L} of {P} with a {natural(d.name)} in {year}.",
                   f"SELECT {lab.name} FROM {t.name} WHERE {d.name} LIKE '{year}%'")
        yield Cand("order_limit", f"What is the {L} of the {S} with the most recent {natural(d.name)}?",
                   f"SELECT {lab.name} FROM {t.name} ORDER BY {d.name} DESC LIMIT 1")


def two_tables(r: random.Random, e: Edge) -> Iterator[Cand]:
    c, p = e.child, e.parent
    cl, pl = c.label, p.label
    on = f"{c.name} AS T1 JOIN {p.name} AS T2 ON T1.{e.fk.name} = T2.{p.pk.name}"
    role = e.role
    as_role = "" if role == p.singular else f" as {role}"
    PC, PP, SC = c.plural_name, e.parents, c.singular
    if pl:
        L2 = natural(pl.name)
        yield Cand("join_group", f"For each {role}, show its {L2} and the number of {PC}.",
                   f"SELECT T2.{pl.name}, count(*) FROM {on} GROUP BY T1.{e.fk.name}")
        yield Cand("join_group_order", f"What is the {L2} of the {role} with the most {PC}?",
                   f"SELECT T2.{pl.name} FROM {on} GROUP BY T1.{e.fk.name} ORDER BY count(*) DESC LIMIT 1")
        k = r.choice([2, 3])
        yield Cand("join_having", f"Which {PP} have at least {k} {PC}{as_role}? Give their {L2}s.",
                   f"SELECT T2.{pl.name} FROM {on} GROUP BY T1.{e.fk.name} HAVING count(*) >= {k}")
        yield Cand("not_in", f"List the {L2} of {p.plural_name} that are not the {role} of any {SC}.",
                   f"SELECT {pl.name} FROM {p.name} WHERE {p.pk.name} NOT IN (SELECT {e.fk.name} FROM {c.name})")
        no_child = f"are not the {role} of any {SC}" if e.ambiguous else f"have no {SC}"
        yield Cand("count_not_in", f"How many {p.plural_name} {no_child}?",
                   f"SELECT count(*) FROM {p.name} WHERE {p.pk.name} NOT IN (SELECT {e.fk.name} FROM {c.name})")
        for n in [x for x in c.columns if x.numeric][:2]:
            N = natural(n.name)
            x = round_threshold(quantile_value(c.values(n), 0.7))
            yield Cand("in_subquery", f"Find the {L2} of {PP} that are the {role} of some {SC} with {N} above "
                       f"{fmt(x)}.", f"SELECT {pl.name} FROM {p.name} WHERE {p.pk.name} IN (SELECT {e.fk.name} "
                       f"FROM {c.name} WHERE {n.name} > {lit(x)})")
            agg = r.choice(n.aggs)
            yield Cand("join_group_agg", f"For each {role}, give its {L2} and the {AGG_WORDS[agg]} {N} of its "
                       f"{PC}.", f"SELECT T2.{pl.name}, {agg}(T1.{n.name}) FROM {on} GROUP BY T2.{pl.name}")
            yield Cand("join_order", f"What is the {L2} of the {role} of the {SC} with the highest {N}?",
                       f"SELECT T2.{pl.name} FROM {on} ORDER BY T1.{n.name} DESC LIMIT 1")
            yield Cand("join_scalar", f"Which {PP} have some {SC} whose {N} is above the average {N}? "
                       f"List their distinct {L2}s.", f"SELECT DISTINCT T2.{pl.name} FROM {on} WHERE T1.{n.name} > "
                       f"(SELECT avg({n.name}) FROM {c.name})")
        for cc in [x for x in c.columns if x.categorical][:2]:
            distinct = list(dict.fromkeys(c.values(cc)))
            if len(distinct) >= 2:
                a, b = r.sample(distinct, 2)
                CC = natural(cc.name)
                yield Cand("join_intersect", f"Which {PP} have both a {SC} with {CC} {a} and a {SC} with {CC} "
                           f"{b}? Give their {L2}s.", f"SELECT T2.{pl.name} FROM {on} WHERE T1.{cc.name} = "
                           f"{lit(a)} INTERSECT SELECT T2.{pl.name} FROM {on} WHERE T1.{cc.name} = {lit(b)}")
                yield Cand("join_except", f"List the {L2} of {PP} that have no {SC} with {CC} {a}.",
                           f"SELECT {pl.name} FROM {p.name} EXCEPT SELECT T2.{pl.name} FROM {on} "
                           f"WHERE T1.{cc.name} = {lit(a)}")
                yield Cand("join_union", f"Which {PP} have a {SC} with {CC} {a} or {b}? Give their {L2}s.",
                           f"SELECT T2.{pl.name} FROM {on} WHERE T1.{cc.name} = {lit(a)} UNION "
                           f"SELECT T2.{pl.name} FROM {on} WHERE T1.{cc.name} = {lit(b)}")
    if cl:
        L1 = natural(cl.name)
        if pl:
            yield Cand("join_show", f"Show the {L1} of each {SC} together with the {natural(pl.name)} of its "
                       f"{role}.", f"SELECT T1.{cl.name}, T2.{pl.name} FROM {on}")
            v = r.choice(p.values(pl))
            yield Cand("join_where", f"List the {L1} of the {PC} whose {role} is {v}.",
                       f"SELECT T1.{cl.name} FROM {on} WHERE T2.{pl.name} = {lit(v)}")
        for pc in [x for x in p.columns if x.categorical][:2]:
            v = r.choice(p.values(pc))
            yield Cand("join_where", f"What are the {L1}s of {PC} whose {role} has {natural(pc.name)} {v}?",
                       f"SELECT T1.{cl.name} FROM {on} WHERE T2.{pc.name} = {lit(v)}")
            yield Cand("join_count", f"How many {PC} have a {role} with {natural(pc.name)} {v}?",
                       f"SELECT count(*) FROM {on} WHERE T2.{pc.name} = {lit(v)}")
        for pn in [x for x in p.columns if x.numeric][:1]:
            x = round_threshold(quantile_value(p.values(pn), 0.5))
            yield Cand("join_where_num", f"Find the {L1} of {PC} whose {role} has a {natural(pn.name)} of at least "
                       f"{fmt(x)}.", f"SELECT T1.{cl.name} FROM {on} WHERE T2.{pn.name} >= {lit(x)}")


def multi_tables(r: random.Random, path: list[tuple[TableSpec, Edge | None]]) -> Iterator[Cand]:
    first, last = path[0][0], path[-1][0]
    m = len(path)
    edges = [e for _, e in path[1:] if e is not None]
    if any(e.ambiguous for e in edges[1:-1]):
        return  # a question would have to say which of the middle table's keys the path follows
    # The end tables are named by their role where the edge is one of several (`destination airport`).
    first_s, first_p = first.singular, first.plural_name
    if edges[0].ambiguous and edges[0].parent is first:
        first_s, first_p = edges[0].role, plural(edges[0].role)
    last_s = edges[-1].role if edges[-1].ambiguous and edges[-1].parent is last else last.singular
    via = " and ".join(t.plural_name for t, _ in path[1:-1])
    on = join_clause(path)
    if first.label:
        L1 = natural(first.label.name)
        for c in [x for x in last.columns if x.categorical or x.unique_text][:2]:
            v = r.choice(last.values(c))
            yield Cand(f"join{m}", f"List the distinct {L1} of {first_p} linked through {via} to a "
                       f"{last_s} whose {natural(c.name)} is {v}.",
                       f"SELECT DISTINCT T1.{first.label.name} FROM {on} WHERE T{m}.{c.name} = {lit(v)}")
    if last.label and first.label:
        yield Cand(f"join{m}_group", f"For each {last_s}, give its {natural(last.label.name)} and the "
                   f"number of distinct {first_p} linked to it through {via}.",
                   f"SELECT T{m}.{last.label.name}, count(DISTINCT T1.{first.pk.name}) FROM {on} "
                   f"GROUP BY T{m}.{last.pk.name}")
    nums = [x for x in last.columns if x.numeric]
    if first.label and nums:
        n = r.choice(nums)
        yield Cand(f"join{m}_order", f"Which {first_s} is linked through {via} to the {last_s} "
                   f"with the highest {natural(n.name)}? List the distinct {natural(first.label.name)}s.",
                   f"SELECT DISTINCT T1.{first.label.name} FROM {on} WHERE T{m}.{n.name} = "
                   f"(SELECT max({n.name}) FROM {last.name})")


def evidence_questions(r: random.Random, t: TableSpec, edges: list[Edge]) -> Iterator[Cand]:
    for n in [c for c in t.columns if c.words]:
        assert n.words is not None
        hi_word, lo_word = n.words
        x = round_threshold(quantile_value(t.values(n), 0.7))
        y = round_threshold(quantile_value(t.values(n), 0.3))
        hi_ev = f"{hi_word} refers to {natural(n.name)} >= {fmt(x)}"
        lo_ev = f"{lo_word} refers to {natural(n.name)} < {fmt(y)}"
        P = t.plural_name
        yield Cand("evidence_count", f"How many {hi_word} {P} are there?",
                   f"SELECT count(*) FROM {t.name} WHERE {n.name} >= {lit(x)}", hi_ev)
        yield Cand("evidence_count", f"Count the {lo_word} {P}.",
                   f"SELECT count(*) FROM {t.name} WHERE {n.name} < {lit(y)}", lo_ev)
        if t.label:
            yield Cand("evidence_list", f"List the {natural(t.label.name)} of all {hi_word} {P}.",
                       f"SELECT {t.label.name} FROM {t.name} WHERE {n.name} >= {lit(x)}", hi_ev)
        for other in [c for c in t.columns if c.numeric and c is not n][:1]:
            yield Cand("evidence_agg", f"What is the average {natural(other.name)} of {lo_word} {P}?",
                       f"SELECT avg({other.name}) FROM {t.name} WHERE {n.name} < {lit(y)}", lo_ev)
        for c in [c for c in t.columns if c.categorical][:1]:
            yield Cand("evidence_group", f"For each {natural(c.name)}, how many {hi_word} {P} are there?",
                       f"SELECT {c.name}, count(*) FROM {t.name} WHERE {n.name} >= {lit(x)} GROUP BY {c.name}",
                       hi_ev)
        for e in edges:
            if e.child is t and e.parent.label:
                p = e.parent
                on = f"{t.name} AS T1 JOIN {p.name} AS T2 ON T1.{e.fk.name} = T2.{p.pk.name}"
                yield Cand("evidence_join", f"Which {e.parents} have at least one {hi_word} {t.singular}? "
                           f"Give their distinct {natural(p.label.name)}s.",
                           f"SELECT DISTINCT T2.{p.label.name} FROM {on} WHERE T1.{n.name} >= {lit(x)}", hi_ev)
            if e.parent is t and e.child.label:
                c = e.child
                on = f"{c.name} AS T1 JOIN {t.name} AS T2 ON T1.{e.fk.name} = T2.{t.pk.name}"
                yield Cand("evidence_join", f"List the {natural(c.label.name)} of {c.plural_name} whose "
                           f"{e.role} is {hi_word}.",
                           f"SELECT T1.{c.label.name} FROM {on} WHERE T2.{n.name} >= {lit(x)}", hi_ev)


def acceptable(conn: sqlite3.Connection, query: str) -> bool:
    try:
        rows = conn.execute(query).fetchall()
    except sqlite3.Error as exc:
        raise AssertionError(f"gold query fails: {query}: {exc}") from exc
    if not rows or all(v is None for v in rows[0]):
        return False
    if re.fullmatch(r"SELECT count\((?:DISTINCT )?[\w.*]+\) FROM .*", query) and rows[0][0] == 0:
        return False
    m = re.search(r" ORDER BY (.+?)(?: DESC| ASC)? LIMIT (\d+)$", query)
    if m:  # the cut-off must not fall inside a tie
        k = int(m.group(2))
        keyed = re.sub(r"^SELECT (?:DISTINCT )?.+? FROM ", f"SELECT {m.group(1)} FROM ", query[: m.end()], count=1)
        keys = conn.execute(keyed.rsplit(" LIMIT ", 1)[0]).fetchall()
        if len(keys) > k and keys[k - 1] == keys[k]:
            return False
    return True


def candidates(r: random.Random, tables: list[TableSpec]) -> list[Cand]:
    edges = edges_of(tables)
    out: list[Cand] = []
    for t in tables:
        out.extend(single_table(r, t))
        out.extend(evidence_questions(r, t, edges))
    for e in edges:
        out.extend(two_tables(r, e))
    for length in (3, 4):
        for path in paths(edges, length):
            out.extend(multi_tables(r, path))
    return out


def choose(r: random.Random, conn: sqlite3.Connection, cands: list[Cand], n: int) -> list[Cand]:
    """About EVIDENCE_SHARE of n evidence questions, the rest round robin over the other templates."""
    seen_q: set[str] = set()
    seen_text: set[str] = set()
    groups: dict[str, list[Cand]] = {}
    for c in cands:
        if c.query in seen_q or c.question in seen_text or not acceptable(conn, c.query):
            continue
        seen_q.add(c.query)
        seen_text.add(c.question)
        groups.setdefault(c.template, []).append(c)
    for g in groups.values():
        r.shuffle(g)
    evidence = [c for k, g in groups.items() if k.startswith("evidence") for c in g]
    r.shuffle(evidence)
    chosen = evidence[: round(n * EVIDENCE_SHARE)]
    names = sorted(k for k in groups if not k.startswith("evidence"))
    r.shuffle(names)
    while len(chosen) < n and any(groups[k] for k in names):
        for k in names:
            if groups[k] and len(chosen) < n:
                chosen.append(groups[k].pop())
    r.shuffle(chosen)
    return chosen


# ------------------------------------------------------------------------------------------------------------
# Spider-style tokens
# ------------------------------------------------------------------------------------------------------------

QUESTION_TOKEN = re.compile(r"\w+(?:[-.']\w+)*|[^\w\s]")
QUERY_TOKEN = re.compile(r"'(?:[^']|'')*'|\d+\.\d+|[\w.]+|[<>!]=|[^\s]")


def question_tokens(q: str) -> list[str]:
    return QUESTION_TOKEN.findall(q)


def query_tokens(query: str) -> list[str]:
    return QUERY_TOKEN.findall(query)


def query_tokens_no_value(toks: list[str]) -> list[str]:
    return ["value" if t.startswith("'") or re.fullmatch(r"-?\d+(?:\.\d+)?", t) else t.lower() for t in toks]


# ------------------------------------------------------------------------------------------------------------
# Checks and writing
# ------------------------------------------------------------------------------------------------------------


def check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def db_path(out_dir: Path, split: str, db_id: str) -> Path:
    folder = "test_database" if split == "test" else "database"
    return out_dir / folder / db_id / f"{db_id}.sqlite"


def split_of(db_id: str) -> str:
    return "dev" if db_id in DEV_DBS else "test" if db_id in TEST_DBS else "train"


def dump_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def prompt_chars(schema_sql: str, question: str, query: str, evidence: str | None = None) -> int:
    hint = f"\n-- Evidence: {evidence}" if evidence else ""
    return len(f"{schema_sql}\n-- {question}{hint}\n{query}")


def schema_sql(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return ";\n".join(s for (s,) in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' "
                                                     "ORDER BY rowid")) + ";"
    finally:
        conn.close()


def percentile(values: list[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def verify(out_dir: Path, questions: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    dbs_by_split = {s: sorted({q["db_id"] for q in questions[s]}) for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                check(not set(dbs_by_split[a]) & set(dbs_by_split[b]), f"{a} and {b} share databases")
    schemas = {s["db_id"]: s for f in ("tables.json", "test_tables.json")
               for s in json.loads((out_dir / f).read_text(encoding="utf-8"))}
    lengths: list[int] = []
    total = 0
    for split in SPLITS:
        counts = dict.fromkeys(FEATURES, 0)
        evidence = 0
        schema_cache: dict[str, str] = {}
        for q in questions[split]:
            path = db_path(out_dir, split, q["db_id"])
            check(q["db_id"] in schemas and path.exists(), f"{q['db_id']}: no schema or database")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                rows = conn.execute(q["query"]).fetchall()
            finally:
                conn.close()
            check(bool(rows), f"{split}: empty result: {q['query']}")
            for f in features_of(q["query"]):
                counts[f] += 1
            evidence += bool(q.get("evidence"))
            if q["db_id"] not in schema_cache:
                schema_cache[q["db_id"]] = schema_sql(path)
            lengths.append(prompt_chars(schema_cache[q["db_id"]], q["question"], q["query"], q.get("evidence")))
        for f, c in counts.items():
            check(c > 0, f"{split}: no question with {f}")
        check(evidence > 0, f"{split}: no question with evidence")
        summary[split] = {"databases": len(dbs_by_split[split]), "questions": len(questions[split]),
                          "evidence": evidence, "features": counts}
        total += len(questions[split])
    n_dbs = sum(len(v) for v in dbs_by_split.values())
    check(n_dbs >= 30, f"only {n_dbs} databases")
    check(1300 <= total <= 1700, f"{total} questions")
    share = {s: summary[s]["questions"] / total for s in SPLITS}
    check(0.62 <= share["train"] <= 0.78 and all(0.1 <= share[s] <= 0.2 for s in ("dev", "test")),
          f"split shares {share}")
    ev = sum(summary[s]["evidence"] for s in SPLITS) / total
    check(0.1 <= ev <= 0.15, f"evidence share {ev:.3f}")
    for db_id, s in schemas.items():
        check(2 <= len(s["table_names_original"]) <= 6, f"{db_id}: {len(s['table_names_original'])} tables")
        check(bool(s["foreign_keys"]), f"{db_id}: no foreign keys")
    summary["lengths"] = {"min": min(lengths), "median": int(statistics.median(lengths)),
                          "p95": percentile(lengths, 0.95), "max": max(lengths)}
    summary["total"] = total
    sizes = [len(s["table_names_original"]) for s in schemas.values()]
    summary["tables"] = (min(sizes), max(sizes), sum(sizes))
    summary["databases"] = n_dbs
    summary["evidence_share"] = ev
    return summary


README = """\
# Bundled multi-table sample (Spider release layout)

A small, **synthetic** multi-table Text-to-SQL data set in the layout of the Spider 1.0 release, so the
multi-table code paths (Spider, BIRD) run offline and in tests. It is *not* Spider or BIRD and contains no
text from them: the databases are filled in from hand-written schema specs with seeded random values, and the
questions come from templates.

## Layout

```
tables.json                         schemas of the train and dev databases (Spider's format)
test_tables.json                    schemas of the test databases
train_spider.json, dev.json, test.json   questions
database/<db_id>/<db_id>.sqlite     train and dev databases
test_database/<db_id>/<db_id>.sqlite     test databases
```

As in the Spider 1.0 release, the test split's databases live under `test_database/` with their schemas in
`test_tables.json`; unlike the release (whose `test_database/` and `test_tables.json` repeat every train and
dev database too), they hold only the test databases, to keep the sample small. The splits share no database.

Schemas (`tables.json`): `db_id`, `table_names_original`, `table_names`, `column_names_original`
(`[table_index, name]`, `[-1, "*"]` first), `column_names`, `column_types` (`text`, `number`, `time`,
`boolean`), `primary_keys` (column indices), `foreign_keys` (`[column, referenced column]`). They match the
SQLite files (every table has an `INTEGER PRIMARY KEY` and its `FOREIGN KEY` constraints).

Questions: `db_id`, `question`, `question_toks`, `query`, `query_toks`, `query_toks_no_value`, and on about
{ev_pct}% of them a BIRD-style `evidence` hint (e.g. `senior refers to age >= 60`); the others have no
`evidence` key. **The parsed `sql` field is omitted**: scoring executes the SQL, and nothing here reads
Spider's parse. Tokens come from simple regexes (string literals are one token, as in Spider), not NLTK.

## How it was made

{made}

Questions are templates instantiated on each database's schema and rows: filters, aggregates
(`count`/`sum`/`avg`/`min`/`max`), GROUP BY / HAVING, ORDER BY (... LIMIT), joins of 2, 3 and 4 tables along
foreign keys (aliases `T1`, `T2`, ...), IN / NOT IN / scalar subqueries, INTERSECT / UNION / EXCEPT,
LIKE / BETWEEN / IN lists, DISTINCT. Every gold query was executed on its database and kept only if it
returns a non-empty result (no zero count, no all-NULL row; an `ORDER BY ... LIMIT k` only where the k-th
and (k+1)-th rows are not tied). Row order matters only where the query has ORDER BY. The generator asserts
these properties at the end; `tests/data/test_spider_sample.py` checks them again from the files.

## Counts

| split | databases | questions | with evidence |
|---|---|---|---|
{count_rows}
| **total** | **{n_dbs}** | **{total}** | **{ev_total}** |

Questions per feature (regexes on the SQL, `FEATURES` in the script; a question counts under every feature it has):

| feature | {feature_header} |
|---|---|---|---|
{feature_rows}

The folder takes {kb} KB.

## Prompt length

Characters of a prompt made of the `CREATE TABLE` statements of the question's database (as stored in
`sqlite_master`), the question (with its evidence, where it has one) and the gold SQL, over all {total}
questions:

| min | median | p95 | max |
|---|---|---|---|
| {lmin} | {lmed} | {lp95} | {lmax} |

At a rough {cpt} characters per token (an estimate, not a tokenizer count: measure with the model's tokenizer
before relying on it) that is about {tmin} / {tmed} / {tp95} / {tmax} tokens: by this estimate a maximum
length of {suggest} tokens holds every prompt with at least 15% to spare (for a chat template).
"""


def folder_bytes(out_dir: Path) -> int:
    return sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())


def render_readme(summary: dict[str, Any], kb: int) -> str:
    lengths = summary["lengths"]
    tokens = {k: round(v / CHARS_PER_TOKEN) for k, v in lengths.items()}
    suggest = 256
    while suggest < tokens["max"] * 1.15:
        suggest *= 2
    made = textwrap.fill(
        f"`python scripts/make_spider_sample.py` (seed {SEED}) writes every file here, this README included. "
        "The JSON files are the same bytes on any machine; the SQLite files hold the same content (compare them "
        "with `iterdump()`: their header bytes carry the writing SQLite's version). "
        f"{summary['databases']} databases, one per domain ({', '.join(natural(d) for d in SPECS)}), "
        f"{summary['tables'][0]}-{summary['tables'][1]} tables each ({summary['tables'][2]} in all), "
        f"{summary['rows'][0]}-{summary['rows'][1]} rows per table, written with `PRAGMA page_size=1024` and VACUUMed.",
        width=110, break_on_hyphens=False, break_long_words=False)
    return README.format(made=made,
        n_dbs=summary["databases"],
        ev_pct=round(100 * summary["evidence_share"]), total=summary["total"],
        ev_total=sum(summary[s]["evidence"] for s in SPLITS),
        count_rows="\n".join(f"| {s} | {summary[s]['databases']} | {summary[s]['questions']} | "
                             f"{summary[s]['evidence']} |" for s in SPLITS),
        feature_header=" | ".join(SPLITS),
        feature_rows="\n".join(f"| {f} | " + " | ".join(str(summary[s]["features"][f]) for s in SPLITS) + " |"
                               for f in FEATURES),
        kb=kb, lmin=lengths["min"], lmed=lengths["median"], lp95=lengths["p95"], lmax=lengths["max"],
        cpt=CHARS_PER_TOKEN, tmin=tokens["min"], tmed=tokens["median"], tp95=tokens["p95"], tmax=tokens["max"],
        suggest=suggest)


def generate(out_dir: Path) -> dict[str, Any]:
    r = random.Random(SEED)
    for name in ("database", "test_database"):
        if (out_dir / name).exists():
            shutil.rmtree(out_dir / name)
    out_dir.mkdir(parents=True, exist_ok=True)
    schemas: dict[str, list[dict[str, Any]]] = {"tables.json": [], "test_tables.json": []}
    questions: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    row_counts: list[int] = []
    for db_id in SPECS:
        split = split_of(db_id)
        tables = parse_spec(db_id)
        fill(r, tables)
        row_counts.extend(len(t.data) for t in tables)
        path = db_path(out_dir, split, db_id)
        write_database(path, tables)
        schemas["test_tables.json" if split == "test" else "tables.json"].append(schema_json(db_id, tables))
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            chosen = choose(r, conn, candidates(r, tables), QUESTIONS_PER_DB)
        finally:
            conn.close()
        for c in chosen:
            c.question = articles(c.question)
            toks = query_tokens(c.query)
            item: dict[str, Any] = {"db_id": db_id, "question": c.question,
                                    "question_toks": question_tokens(c.question), "query": c.query,
                                    "query_toks": toks, "query_toks_no_value": query_tokens_no_value(toks)}
            if c.evidence:
                item["evidence"] = c.evidence
            questions[split].append(item)
    for name, objs in schemas.items():
        dump_json(out_dir / name, objs)
    for split in SPLITS:
        dump_json(out_dir / QUESTION_FILES[split], questions[split])
    summary = verify(out_dir, questions)
    summary["rows"] = (min(row_counts), max(row_counts))
    readme = out_dir / "README.md"
    kb = 0
    for _ in range(3):  # the README states the folder's size, its own included
        readme.write_text(render_readme(summary, kb), encoding="utf-8", newline="\n")
        kb = round(folder_bytes(out_dir) / 1024)
    readme.write_text(render_readme(summary, kb), encoding="utf-8", newline="\n")
    summary["bytes"] = folder_bytes(out_dir)
    check(summary["bytes"] <= MAX_BYTES, f"sample is {summary['bytes']} bytes")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default: {OUT_DIR})")
    args = parser.parse_args(argv)
    try:
        summary = generate(args.out)
    except AssertionError as exc:
        print(f"make_spider_sample: {exc}", file=sys.stderr)
        return 1
    for split in SPLITS:
        s = summary[split]
        print(f"{split}: {s['databases']} databases, {s['questions']} questions, {s['evidence']} with evidence")
        print("  " + ", ".join(f"{k} {v}" for k, v in s["features"].items()))
    n = summary["lengths"]
    print(f"prompt chars (schema + question + evidence + SQL): min {n['min']}, median {n['median']}, p95 {n['p95']}, "
          f"max {n['max']} (~{CHARS_PER_TOKEN} chars/token: max ~{round(n['max'] / CHARS_PER_TOKEN)} tokens)")
    print(f"wrote {args.out} ({summary['bytes']} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
