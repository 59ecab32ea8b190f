"""A synthetic table with every column kind `init` decides on, written by pandas as users' exports are."""
import os

import numpy as np
import pandas as pd

AIRPORTS = ["ORD", "ATL", "DFW", "DEN", "JFK", "SFO", "SEA", "LAS", "MCO", "BOS"]


def flights(rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """Flight delays: a learnable label from several columns, gaps, an id, a constant, a shared pair."""
    rng = np.random.default_rng(seed)
    origin = rng.choice(AIRPORTS, rows)
    dest = rng.choice(AIRPORTS, rows)
    hour = rng.integers(0, 24, rows).astype(float)
    hour[rng.random(rows) < 0.05] = np.nan  # pandas then writes the column as 8.0
    distance = rng.lognormal(6.0, 0.9, rows)
    temperature = rng.normal(5.0, 12.0, rows)
    carrier = rng.choice(["AA", "UA", "DL", "WN", "B6"], rows).astype(object)
    carrier[rng.random(rows) < 0.1] = None
    late_hub = np.isin(origin, ["ORD", "JFK", "SFO"]) | np.isin(dest, ["ORD", "JFK"])
    score = (1.5 * late_hub + 0.12 * np.nan_to_num(hour - 12, nan=0.0) - 0.05 * temperature
             + 0.8 * (carrier == "WN") + rng.normal(0, 0.7, rows))
    return pd.DataFrame({
        "flight_id": np.arange(100_000, 100_000 + rows),
        "source": "ops-export",
        "origin": origin,
        "dest": dest,
        "dep_hour": hour,
        "distance_miles": distance.round(1),
        "temperature_c": temperature.round(1),
        "carrier code": carrier,  # a name TensorFlow cannot use as an op name, as exports have
        "gate_latitude": (41.9 + rng.normal(0, 0.05, rows)).round(5),
        "gate_longitude": (-87.9 + rng.normal(0, 0.05, rows)).round(5),
        "remarks": np.where(rng.random(rows) < 0.99, None, "see log"),
        "delayed": np.where(score > np.median(score), "yes", "no"),
    })


def write_flights(directory: str, rows: int = 800, seed: int = 0) -> str:
    os.makedirs(directory, exist_ok=True)
    flights(rows, seed).to_csv(os.path.join(directory, "flights.csv"), index=False)
    return directory


PRAISE = ["delicious", "friendly", "fresh", "wonderful", "cozy", "tasty"]
COMPLAINTS = ["cold", "rude", "stale", "noisy", "slow", "bland"]
FILLER = ["the", "food", "was", "service", "and", "place", "our", "table", "dinner", "very"]


def reviews(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Restaurant reviews: whether the guest liked it is in the words of the free-text `review` (a
    praise word vs a complaint word), barely in the price; a few reviews are missing."""
    rng = np.random.default_rng(seed)
    liked = rng.random(rows) < 0.5
    texts = []
    for good in liked:
        words = list(rng.choice(FILLER, rng.integers(3, 8)))
        words.insert(int(rng.integers(0, len(words) + 1)),
                     str(rng.choice(PRAISE if good else COMPLAINTS)))
        texts.append(" ".join(words))
    review = np.array(texts, dtype=object)
    review[rng.random(rows) < 0.03] = None
    return pd.DataFrame({
        "review": review,
        "price": rng.lognormal(3.0, 0.4, rows).round(2),
        "liked": np.where(liked, "yes", "no"),
    })


def write_reviews(directory: str, rows: int = 600, seed: int = 0) -> str:
    os.makedirs(directory, exist_ok=True)
    reviews(rows, seed).to_csv(os.path.join(directory, "reviews.csv"), index=False)
    return directory
