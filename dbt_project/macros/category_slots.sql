{#- The user's history per item category: var('category_history_slots') slots,
    one per common category (the mart category_history_slots says which). Each
    slot is a column of the feature mart and of user_features_latest, declared to
    models_py through the mart's meta (category_slot_features), so the count can
    change without a YAML edit. -#}
{% macro category_slot_numbers() %}
    {% set slots = var('category_history_slots') | int %}
    {% if slots < 0 %}
        {{ exceptions.raise_compiler_error(
            "var category_history_slots must be 0 or more, got " ~ slots) }}
    {% endif %}
    {{ return(range(1, slots + 1) | list) }}
{% endmacro %}

{% macro category_slot_name(slot, what) %}
    {{- return('user_slot_' ~ '%02d' | format(slot) ~ '_' ~ what) -}}
{% endmacro %}

{#- The user's clicks and expected clicks (the items' smoothed CTRs) in each
    slot's category, as aggregates over `window` (a window name; empty: a plain
    group-by), plus the same sums of `carried` (a relation with these columns:
    the carried totals of an incremental build). Two sums per slot cost the
    build most of its extra time: at 1M rows 24 slots add about 11 s to int_impression_exposure on DuckDB and 6 s
    on SQLite (a range frame ending 1 s before; frames up to the current row
    less the same second's rows were no faster on DuckDB and 2.5x slower on
    SQLite). Clicks are cast to bigint (see int_impression_history). A leading
    comma per column. -#}
{% macro category_slot_sums(window='', carried='') %}
    {%- set over = ' over ' ~ window if window else '' -%}
    {%- for slot in category_slot_numbers() %}
        {%- set clicks = category_slot_name(slot, 'prior_clicks') %}
        {%- set expected = category_slot_name(slot, 'prior_expected_clicks') %},
        cast(coalesce(sum(case when category_slot = {{ slot }} then clicked else 0 end){{ over }}, 0)
        {%- if carried %} + coalesce({{ carried }}.{{ clicks }}, 0){% endif %} as bigint)
            as {{ clicks }},
        coalesce(sum(case when category_slot = {{ slot }} then item_ctr else 0.0 end){{ over }}, 0.0)
        {%- if carried %} + coalesce({{ carried }}.{{ expected }}, 0.0){% endif %}
            as {{ expected }}
    {%- endfor %}
{%- endmacro %}

{#- Each slot's clicks over expected clicks, from the sums above (in `relation`,
    optionally qualified; coalesced for users with no row). A leading comma per
    column. -#}
{% macro category_slot_coecs(relation='') %}
    {%- set prefix = relation ~ '.' if relation else '' -%}
    {%- for slot in category_slot_numbers() %},
        {{ coec('coalesce(' ~ prefix ~ category_slot_name(slot, 'prior_clicks') ~ ', 0)',
                'coalesce(' ~ prefix ~ category_slot_name(slot, 'prior_expected_clicks') ~ ', 0)') }}
            as {{ category_slot_name(slot, 'coec') }}
    {%- endfor %}
{%- endmacro %}

{#- The slot columns as registry entries for the feature mart's meta: numeric,
    on the log scale, and crossed in the model's wide path with the candidate's
    category, so the model learns how each category's history moves each
    candidate category. -#}
{% macro category_slot_features() %}
    {% set entries = [] %}
    {% for slot in category_slot_numbers() %}
        {% do entries.append({
            'name': category_slot_name(slot, 'coec'),
            'type': 'numeric',
            'group': 'user_category_slots',
            'transform': 'log',
            'crossed_with': 'category',
        }) %}
    {% endfor %}
    {{ return(entries) }}
{% endmacro %}
