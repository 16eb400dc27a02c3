"""The results store's tables (results/store.py creates them; older stores gain the columns added since)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    backbone TEXT NOT NULL,
    dataset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    protocol_type TEXT NOT NULL,
    seed INTEGER NOT NULL,
    repeat INTEGER NOT NULL DEFAULT 0,
    task TEXT NOT NULL,
    config TEXT NOT NULL,
    selected TEXT NOT NULL,
    candidates TEXT NOT NULL,
    details TEXT NOT NULL,
    timings TEXT NOT NULL,
    feature_cache TEXT,
    radbench_version TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    job_key TEXT NOT NULL REFERENCES jobs(key),
    split TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (job_key, split, name)
);
CREATE TABLE IF NOT EXISTS sample_metrics (
    job_key TEXT NOT NULL REFERENCES jobs(key),
    sample_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    patient_id TEXT,
    PRIMARY KEY (job_key, sample_id, name)
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS predictions (
    job_key TEXT PRIMARY KEY REFERENCES jobs(key),
    class_names TEXT NOT NULL,
    sample_ids TEXT NOT NULL,
    targets BLOB NOT NULL,
    scores BLOB NOT NULL,
    shape TEXT NOT NULL,
    patient_ids TEXT,
    checksums TEXT
);
CREATE TABLE IF NOT EXISTS planned_units (
    study TEXT NOT NULL,
    backbone TEXT NOT NULL,
    dataset TEXT NOT NULL,
    PRIMARY KEY (study, backbone, dataset)
);
CREATE TABLE IF NOT EXISTS planned_jobs (
    key TEXT PRIMARY KEY,
    backbone TEXT NOT NULL,
    dataset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    seed INTEGER NOT NULL,
    repeat INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sample_groups (
    dataset TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (dataset, sample_id, name)
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    backbone TEXT NOT NULL,
    dataset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    seed INTEGER NOT NULL,
    repeat INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS study_notes (
    study TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (study, kind, name)
);
"""
