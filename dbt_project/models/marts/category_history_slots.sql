-- One row per item category that has its own slot in the users' per-category
-- history (the user_slot_NN_* columns): the var category_history_slots most
-- common categories by number of items, ties by name. Other categories'
-- history is left out of the slots (it still counts in the user's totals).
-- models_py stores this mapping with each run and refuses to serve a run whose
-- slots meant other categories.
with

items as (

    select category from {{ ref('stg_items') }}
    where category is not null

),

category_sizes as (

    select
        category,
        count(*) as items
    from items
    group by category

),

ranked as (

    select
        category,
        row_number() over (order by items desc, category asc) as slot
    from category_sizes

)

select
    category,
    slot
from ranked
where slot <= {{ var('category_history_slots') }}
