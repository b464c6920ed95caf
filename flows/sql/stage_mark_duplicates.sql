-- Flag accepted lines whose event_id an earlier line of the source day already delivered
-- (earlier: lower row_no, i.e. source key, then line number).
update parsed
set is_duplicate = true
where row_no in (
    select row_no
    from parsed
    where reason is null
    qualify row_number() over (partition by event_id order by row_no) > 1
)
