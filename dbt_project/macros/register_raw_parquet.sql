{#- Spark only (an on-run-start hook): register the Parquet copies of the raw
    tables (`python -m seeds_gen parquet` writes them to <data dir>/raw_parquet)
    as tables of the database `raw`, so the sources resolve as on the other
    engines. Re-registered on every run: a new export is picked up. Emits no
    SQL on other targets. -#}
{% macro register_raw_parquet() %}
    {% if execute and target.type == 'spark' %}
        {% set folder = env_var('RECSYS_DATA_DIR', 'data') ~ '/raw_parquet' %}
        {% do run_query('create database if not exists raw') %}
        {% for table in ['users', 'items', 'interactions'] %}
            {% do run_query('drop table if exists raw.' ~ table) %}
            {% do run_query(
                'create table raw.' ~ table ~ " using parquet location '"
                ~ folder ~ '/' ~ table ~ "'") %}
        {% endfor %}
    {% endif %}
{% endmacro %}
