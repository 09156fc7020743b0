{#- Parse a raw value into a bigint, or NULL when it is not an integer.
    dbt.safe_cast is not safe across engines: SQLite's cast turns 'abc' into 0
    and '12abc' into 12, so SQLite checks the stored type and the text round
    trip instead; the other engines have try_cast. -#}

{% macro parse_bigint(expr) %}
    {{ return(adapter.dispatch('parse_bigint', 'recsys')(expr)) }}
{% endmacro %}

{% macro default__parse_bigint(expr) %}
    try_cast({{ expr }} as bigint)
{% endmacro %}

{% macro sqlite__parse_bigint(expr) %}
    case
        when typeof({{ expr }}) = 'integer' then {{ expr }}
        when typeof({{ expr }}) = 'real' and {{ expr }} = cast({{ expr }} as integer)
            then cast({{ expr }} as integer)
        when typeof({{ expr }}) = 'text'
            and cast(cast(trim({{ expr }}) as integer) as text) = trim({{ expr }})
            then cast(trim({{ expr }}) as integer)
    end
{% endmacro %}

{#- Raw values as text, for the quarantine, which keeps rows exactly as they came. -#}
{% macro as_text(expr) %}
    cast({{ expr }} as {{ dbt.type_string() }})
{% endmacro %}

{#- Parse a raw value into a double, or NULL when it is not a number. -#}
{% macro parse_double(expr) %}
    {{ return(adapter.dispatch('parse_double', 'recsys')(expr)) }}
{% endmacro %}

{% macro default__parse_double(expr) %}
    try_cast({{ expr }} as double)
{% endmacro %}

{% macro sqlite__parse_double(expr) %}
    case
        when typeof({{ expr }}) in ('integer', 'real') then cast({{ expr }} as real)
        when typeof({{ expr }}) = 'text'
            and trim({{ expr }}) glob '*[0-9]*'
            and trim({{ expr }}) not glob '*[^0-9.eE+-]*'
            then cast(trim({{ expr }}) as real)
    end
{% endmacro %}

{#- The core columns of a raw interaction, as staging types them: each as text
    (raw_*, what the quarantine keeps) and parsed (NULL when not an integer).
    stg_interactions selects them; the incremental build's raw check
    (raw_prefix_problem) fingerprints raw rows with the very same parse. -#}
{% macro parsed_interaction_columns() %}
    {%- set columns = ['interaction_id', 'user_id', 'item_id', 'event_ts', 'clicked'] -%}
    {%- for column in columns %}
        {{ as_text(column) }} as raw_{{ column }},
    {%- endfor %}
    {%- for column in columns %}
        {{ parse_bigint(column) }} as {{ column }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
