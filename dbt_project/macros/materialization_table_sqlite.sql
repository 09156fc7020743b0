{#- dbt-sqlite's table materialization drops the old table before building the
    new one, so a failed rebuild leaves no table at all. This one builds under a
    temporary name and swaps only after the new table exists (swap_in.sql): a
    failing model leaves the last good table in place. -#}
{% materialization table, adapter='sqlite' %}
  {%- set identifier = model['alias'] -%}
  {%- set old_relation = adapter.get_relation(database=database, schema=schema, identifier=identifier) -%}
  {%- set relations = swap_relations(identifier, schema, database) -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ create_table_as(False, relations['new'], sql) }}
  {%- endcall %}

  {% do swap_in(relations, old_relation) %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(relations['target'], model) %}
  {{ adapter.commit() }}

  {% do drop_swapped_out(relations, old_relation) %}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [relations['target']]}) }}
{% endmaterialization %}
