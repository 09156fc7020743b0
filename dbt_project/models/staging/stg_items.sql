with

source as (

    select * from {{ source('raw', 'items') }}

),

parsed as (

    select
        {{ parse_bigint('item_id') }} as item_id,
        coalesce(cast(category as {{ dbt.type_string() }}), 'unknown') as category,
        {{ parse_bigint('created_ts') }} as created_ts
        {{- parsed_attribute_columns('item') }}
    from source

)

select * from parsed
where item_id is not null and item_id >= 0
