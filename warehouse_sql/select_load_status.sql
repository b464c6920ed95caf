-- `vdp status`: the newest loaded source day and the last load, in one row (nulls before any
-- load). A load's source day is the newest it covered: its own day, or a later one it
-- published for a crashed run (source_days also holds the lookback days before it).
with loads as (
    select
        greatest(
            partition_date,
            (select max(covered.day) from unnest(source_days) as covered (day))
        ) as source_day,
        run_id,
        flow_run_id,
        finished_at
    from warehouse.load_audit
),

newest as (
    select
        max(source_day) as newest_source_day,
        count(*) as loads
    from loads
),

last_load as (
    select
        run_id,
        flow_run_id,
        source_day,
        finished_at
    from loads
    order by finished_at desc
    limit 1
)

select
    newest.newest_source_day,
    newest.loads,
    last_load.run_id as last_run_id,
    last_load.flow_run_id as last_flow_run_id,
    last_load.source_day as last_source_day,
    last_load.finished_at as last_finished_at
from newest
left join last_load on true
