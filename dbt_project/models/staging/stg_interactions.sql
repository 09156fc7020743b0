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
        {{- parsed_interaction_columns() }}
        {{- parsed_attribute_columns('context') }}
    from source

)

select * from parsed
