-- Every source day a load covered: a daily run also publishes the earlier days that received
-- late objects, and a run recovers days a crashed run staged, so one partition_date is not
-- enough to say what a load brought in. Loads before this migration covered their
-- partition_date only (a daily run or one backfill day).
alter table warehouse.load_audit add column source_days date[];

update warehouse.load_audit set source_days = array[partition_date];

alter table warehouse.load_audit alter column source_days set not null;
