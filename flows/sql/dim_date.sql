-- Every calendar day from the first to the last event date or period start/finish date (UTC).
with event_dates as (
    select distinct event_date as date_key from entity_dates
),

period_dates as (
    select start_at::date as date_key from fact_operating_period
    union
    select finish_at::date as date_key from fact_operating_period
),

bounds as (
    select
        min(date_key) as first_date,
        max(date_key) as last_date
    from (select date_key from event_dates union select date_key from period_dates)
),

spine as (
    select unnest(generate_series(first_date, last_date, interval 1 day))::date as date_key
    from bounds
    where first_date is not null
),

final as (
    select
        date_key,
        year(date_key)::integer as year,
        quarter(date_key)::integer as quarter,
        month(date_key)::integer as month,
        day(date_key)::integer as day,
        isodow(date_key)::integer as day_of_week,
        isodow(date_key) >= 6 as is_weekend
    from spine
)

select * from final
order by date_key
