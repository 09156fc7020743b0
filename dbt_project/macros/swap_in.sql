{#- Building a table under a temporary name and swapping it in, so that a failed
    build leaves the last good table in place: the table materialization on
    SQLite and incremental_features both build this way. -#}

{#- The relations of such a build: `target`, the `new` table built beside it and
    the `backup` the old one is renamed to. Leftovers of a killed build are
    dropped. -#}
{% macro swap_relations(identifier, schema, database) %}
    {%- set relations = {} -%}
    {%- for role, suffix in [('target', ''), ('new', '__dbt_new'), ('backup', '__dbt_backup')] -%}
        {%- do relations.update({role: api.Relation.create(
                identifier=identifier ~ suffix, schema=schema, database=database, type='table')}) -%}
    {%- endfor -%}
    {%- for leftover in [relations['new'], relations['backup']] -%}
        {%- if adapter.get_relation(database=database, schema=schema,
                                    identifier=leftover.identifier) is not none -%}
            {%- do adapter.drop_relation(leftover) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(relations) }}
{% endmacro %}

{#- Put the built `new` table in the target's place (the old one, if any, becomes
    the backup, dropped after the commit by drop_swapped_out). -#}
{% macro swap_in(relations, old_relation) %}
    {%- if old_relation is not none -%}
        {%- do adapter.rename_relation(old_relation, relations['backup']) -%}
    {%- endif -%}
    {%- do adapter.rename_relation(relations['new'], relations['target']) -%}
{% endmacro %}

{% macro drop_swapped_out(relations, old_relation) %}
    {%- if old_relation is not none -%}
        {%- do adapter.drop_relation(relations['backup']) -%}
    {%- endif -%}
{% endmacro %}
