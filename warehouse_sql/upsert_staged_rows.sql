-- Upsert a table's staged rows on its key; unchanged rows are left alone. flows/load.py fills
-- in the table, its staging table and the column lists from flows/tables.py.
insert into {table} as target ({columns})
select {columns}
from {stage}
on conflict ({key}) do update set {assignments}
where ({target_values}) is distinct from ({excluded_values})
