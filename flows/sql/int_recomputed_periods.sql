-- Periods whose vehicle rows this run must recompute: those with a create/delete in the run's
-- source days, those whose window holds a valid point the run added or removed (any
-- organization), those whose bounds or organization differ from the published table, and
-- those of the same organization that a live break overlaps now or overlapped when published
-- but not both (a break created, moved, deleted or restored; old and new bounds).
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

live_breaks as (
    select vehicle_id, organization_id, start_at, finish_at
    from fact_break
    where not is_deleted
),

published_live_breaks as (
    select vehicle_id, organization_id, start_at, finish_at
    from published_break
    where not is_deleted
),

changed_breaks as (
    (select * from live_breaks except select * from published_live_breaks)
    union all
    (select * from published_live_breaks except select * from live_breaks)
),

periods_under_changed_breaks as (
    select distinct p.operating_period_id
    from periods as p
    inner join changed_breaks as b
        on b.organization_id = p.organization_id
        and b.start_at <= p.finish_at
        and b.finish_at >= p.start_at
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
    select operating_period_id from periods_under_changed_breaks
    union
    select operating_period_id from changed_periods
)

select operating_period_id
from final
where operating_period_id in (select operating_period_id from periods)
order by operating_period_id
