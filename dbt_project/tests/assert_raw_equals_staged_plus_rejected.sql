-- Nothing is dropped silently: for every raw interaction id (NULL included),
-- the raw row count equals staged plus rejected rows with that id.
with

raw_rows as (

    select
        {{ as_text('interaction_id') }} as interaction_id,
        1 as delta
    from {{ source('raw', 'interactions') }}

),

staged_rows as (

    select
        {{ as_text('interaction_id') }} as interaction_id,
        -1 as delta
    from {{ ref('int_interactions') }}

),

rejected_rows as (

    select
        interaction_id,
        -1 as delta
    from {{ ref('int_interactions_rejected') }}

),

all_rows as (

    select * from raw_rows
    union all
    select * from staged_rows
    union all
    select * from rejected_rows

),

unbalanced as (

    select
        coalesce(interaction_id, '<null>') as interaction_id,
        sum(delta) as raw_minus_accounted
    from all_rows
    group by coalesce(interaction_id, '<null>')
    having sum(delta) != 0

)

select * from unbalanced
