-- Insert the staged rows of the periods this load recomputed (after delete_<table>.sql removed
-- their old rows). flows/load.py fills in the table, its staging table and the columns from
-- flows/tables.py.
insert into {table} ({columns})
select {columns}
from {stage}
where operating_period_id = any(%(period_ids)s::text[])
