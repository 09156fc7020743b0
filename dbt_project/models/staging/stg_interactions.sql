-- One row per raw interaction, typed: each column parsed (NULL where the raw
-- value is not a valid number) beside the raw values as text, which the
-- quarantine keeps exactly as they came. Renaming and typing only: the checks
-- live in int_interactions_checked. Ephemeral: inlined there, so the 1M-row
-- parse is not written twice (and SQLite's views cannot read the attached raw
-- database).
{{ config(materialized='ephemeral') }}

with

source as (

    select * from {{ source('raw', 'interactions') }}

),

parsed as (

    select
        {{ as_text('interaction_id') }} as raw_interaction_id,
        {{ as_text('user_id') }} as raw_user_id,
        {{ as_text('item_id') }} as raw_item_id,
        {{ as_text('event_ts') }} as raw_event_ts,
        {{ as_text('clicked') }} as raw_clicked,
        {{ parse_bigint('interaction_id') }} as interaction_id,
        {{ parse_bigint('user_id') }} as user_id,
        {{ parse_bigint('item_id') }} as item_id,
        {{ parse_bigint('event_ts') }} as event_ts,
        {{ parse_bigint('clicked') }} as clicked
        {{- parsed_attribute_columns('context') }}
    from source

)

select * from parsed
