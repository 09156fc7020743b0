{{ config(severity='warn') }}
-- Warns (never fails) when any raw interaction was rejected, with the count per
-- reason; see int_interactions_rejected for the rows themselves.
select
    reason,
    count(*) as n_rejected
from {{ ref('int_interactions_rejected') }}
group by reason
