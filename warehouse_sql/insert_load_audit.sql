-- Record a committed load; run_id is unique, so it also tells a crashed run whether it landed.
insert into warehouse.load_audit (
    run_id,
    flow_run_id,
    partition_date,
    source_days,
    rows,
    started_at,
    finished_at
)
values (
    %(run_id)s,
    %(flow_run_id)s,
    %(partition_date)s,
    %(source_days)s,
    %(rows)s,
    %(started_at)s,
    clock_timestamp()
)
returning finished_at
