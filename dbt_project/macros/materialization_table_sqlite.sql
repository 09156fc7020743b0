{#- dbt-sqlite's table materialization drops the old table before building the
    new one, so a failed rebuild leaves no table at all. This one builds under a
    temporary name and swaps only after the new table exists: a failing model
    leaves the last good table in place. -#}
{% materialization table, adapter='sqlite' %}
  {%- set identifier = model['alias'] -%}
  {%- set old_relation = adapter.get_relation(database=database, schema=schema, identifier=identifier) -%}
  {%- set target_relation = api.Relation.create(
        identifier=identifier, schema=schema, database=database, type='table') -%}
  {%- set new_relation = api.Relation.create(
        identifier=identifier ~ '__dbt_new', schema=schema, database=database, type='table') -%}
  {%- set backup_relation = api.Relation.create(
        identifier=identifier ~ '__dbt_backup', schema=schema, database=database, type='table') -%}

  {%- for leftover in [new_relation, backup_relation] -%}
    {%- if adapter.get_relation(database=database, schema=schema, identifier=leftover.identifier) is not none -%}
      {% do adapter.drop_relation(leftover) %}
    {%- endif -%}
  {%- endfor -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ create_table_as(False, new_relation, sql) }}
  {%- endcall %}

  {% if old_relation is not none %}
    {% do adapter.rename_relation(old_relation, backup_relation) %}
  {% endif %}
  {% do adapter.rename_relation(new_relation, target_relation) %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}

  {% if old_relation is not none %}
    {% do adapter.drop_relation(backup_relation) %}
  {% endif %}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
