-- Periods whose vehicle rows this run must recompute: those with a create/delete in the run's
-- source days, those whose window holds a valid point the run added or removed (any
-- organization), and those whose bounds or organization differ from the published table.
with periods as (
    select * from fact_operating_period
),

published as (
    select * from published_operating_period
),

run_period_ids as (
    select distinct entity_id as operating_period_id
    from run_events
    where "on" = 'operating_period'
),

run_point_times as (
    select location_at from changed_point_times
),

windows_with_run_points as (
    select distinct p.operating_period_id
    from periods as p
    inner join run_point_times as r
        on r.location_at between p.start_at and p.finish_at
),

changed_periods as (
    select operating_period_id, organization_id, start_at, finish_at from periods
    except
    select operating_period_id, organization_id, start_at, finish_at from published
),

final as (
    select operating_period_id from run_period_ids
    union
    select operating_period_id from windows_with_run_points
    union
    select operating_period_id from changed_periods
)

select operating_period_id
from final
where operating_period_id in (select operating_period_id from periods)
order by operating_period_id
