"""A study becoming records, step by step (radbench/runner.py tells the story):

    checks.py    before any work: everything checkable without running a job
    plan.py      study -> units (backbone x dataset) -> jobs, with stable keys
    schedule.py  which unit / job this process takes: claims, torchrun ranks, executor units
    prepare.py   a unit's inputs (data, caches, features, backbone), built per protocol by what it declares
    execute.py   job -> protocol -> JobRecord, one function for every kind
    store.py     the SQLite store or shard files, behind one interface"""
