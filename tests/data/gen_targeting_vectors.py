#!/usr/bin/env python3
"""Writes tests/data/targeting-v1-vectors.json: cases for holdouts, bucket_by and prerequisites
(docs/bucketing-v1.md, sections 6.1-6.3), computed with Python's hashlib, independently of
abkit's Rust code. Run from the repository root: python3 tests/data/gen_targeting_vectors.py
"""
import hashlib
import json


def bucket(salt: str, value: str) -> int:
    digest = hashlib.sha256(f"{salt}:{value}".encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") * 10000) >> 64


def half(b: int) -> str:
    # A 50/50 experiment at full coverage: ranges [0, 5000) and [5000, 10000).
    return "a" if b < 5000 else "b"


cases = []
# Holdouts: held out iff bucket(holdout salt, unit) < coverage bp; else the experiment decides.
for i in range(40):
    unit = f"user-{i * 7919}"
    for salt, coverage_bp in (("h2026", 500), ("global-holdout", 2000)):
        held = bucket(salt, unit) < coverage_bp
        cases.append({
            "rule": "holdout", "holdout_salt": salt, "holdout_coverage_bp": coverage_bp,
            "experiment_salt": "exp", "unit": unit, "attributes": {},
            "reason": "holdout" if held else "assigned",
            "variant": None if held else half(bucket("exp", unit)),
        })
# bucket_by = ["account_id", "device_id"]: the first present, non-empty attribute is hashed.
for i in range(30):
    unit = f"anon-{i}"
    account, device = f"acct-{i * 31}", f"dev-{i * 17}"
    for attrs in ({"account_id": account, "device_id": device}, {"device_id": device},
                  {"account_id": "", "device_id": device}, {}):
        value = attrs.get("account_id") or attrs.get("device_id") or None
        cases.append({
            "rule": "bucket_by", "bucket_by": ["account_id", "device_id"],
            "experiment_salt": "exp", "unit": unit, "attributes": attrs,
            "reason": "assigned" if value else "missing_bucket_key",
            "variant": half(bucket("exp", value)) if value else None,
        })
# requires = { experiment = "base", variants = ["b"] }.
for i in range(40):
    unit = f"user-{i * 104729}"
    met = half(bucket("base", unit)) == "b"
    cases.append({
        "rule": "prerequisite", "required_salt": "base", "required_variants": ["b"],
        "experiment_salt": "exp", "unit": unit, "attributes": {},
        "reason": "assigned" if met else "prerequisite",
        "variant": half(bucket("exp", unit)) if met else None,
    })

with open("tests/data/targeting-v1-vectors.json", "w", encoding="utf-8") as f:
    json.dump({"spec": "bucketing-v1 sections 6.1-6.3", "variants": ["a", "b"], "cases": cases},
              f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"{len(cases)} cases")
