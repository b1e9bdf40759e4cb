"""dashboards.macros against the expectations in Grafana's own tests and sources.

One module of ~490 lines: Grafana's expectations for each interpolation stage, in the order of
dashboards.macros.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dashboards.macros import MacroError, TimeRange, Variable, expand, interval_for, interval_text

# pkg/tsdb/grafana-postgresql-datasource/macros_test.go: "Given a time range between 2018-04-12 00:00 and ... 00:05"
FROM = datetime(2018, 4, 12, 18, 0, 0, tzinfo=UTC)
FIVE_MINUTES = TimeRange(FROM, FROM + timedelta(minutes=5))


def at(ms: int) -> TimeRange:
    return TimeRange(FROM, FROM + timedelta(milliseconds=ms))


@pytest.mark.parametrize(
    ("raw_sql", "expected"),
    [
        ("select $__time(time_column)", 'select time_column AS "time"'),
        ("select min($__time(time_column))", 'select min(time_column AS "time")'),
        (
            "WHERE $__timeFilter(time_column)",
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'",
        ),
        ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
        ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
        (
            "SELECT $__timeGroup(time_column,'5m'), value",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value',
        ),
        (
            "SELECT $__timeGroup(time_column,'5m') as time, value",
            "SELECT floor(extract(epoch from time_column)/300)*300 as time, value",
        ),
        ("SELECT $__timeGroup(time_column,'5m')", "SELECT floor(extract(epoch from time_column)/300)*300"),
        (
            "SELECT $__timeGroupAlias(time_column,'5m')",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time"',
        ),
        ("$__timeGroup(time_column , '5m')", "floor(extract(epoch from time_column)/300)*300"),
        ("$__timeGroupAlias(time_column , '5m')", 'floor(extract(epoch from time_column)/300)*300 AS "time"'),
        ("select $__unixEpochFilter(time)", "select time >= 1523556000 AND time <= 1523556300"),
        ("select $__unixEpochNanoFilter(time)", "select time >= 1523556000000000000 AND time <= 1523556300000000000"),
        ("select $__unixEpochNanoFrom()", "select 1523556000000000000"),
        ("select $__unixEpochNanoTo()", "select 1523556300000000000"),
        (
            "SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')",
            "SELECT floor((time_column+time_adjustment)/300)*300",
        ),
        (
            "SELECT $__unixEpochGroupAlias(time_column+time_adjustment,'5m')",
            'SELECT floor((time_column+time_adjustment)/300)*300 AS "time"',
        ),
        # not in macros_test.go; straight from macros.go and sql_engine.go's Interpolate
        ("select $__timeEpoch(ts)", 'select extract(epoch from ts) as "time"'),
        ("select $__unixEpochFrom(), $__unixEpochTo()", "select 1523556000, 1523556300"),
    ],
)
def test_macros_render_as_in_grafanas_macros_test(raw_sql: str, expected: str) -> None:
    assert expand(raw_sql, FIVE_MINUTES) == expected


@pytest.mark.parametrize(
    ("raw_sql", "expected"),
    [
        ("GROUP BY $__timeGroup(time_column,'5m')", "GROUP BY time_bucket('300.000s',time_column)"),
        ("GROUP BY $__timeGroup(time_column , '5m')", "GROUP BY time_bucket('300.000s',time_column)"),
        ("GROUP BY $__timeGroup(time_column , '12d')", "GROUP BY time_bucket('1036800.000s',time_column)"),
        ("GROUP BY $__timeGroup(time_column , '20ms')", "GROUP BY time_bucket('0.020s',time_column)"),
        ("SELECT $__timeGroupAlias(t, '1h')", "SELECT time_bucket('3600.000s',t) AS \"time\""),
        # TimescaleDB changes only $__timeGroup; the epoch variant keeps floor()
        ("$__unixEpochGroup(t, '1h')", "floor((t)/3600)*3600"),
    ],
)
def test_timescaledb_uses_time_bucket(raw_sql: str, expected: str) -> None:
    assert expand(raw_sql, FIVE_MINUTES, timescaledb=True) == expected


@pytest.mark.parametrize(
    ("start", "end", "start_epoch", "end_epoch", "start_text", "end_text"),
    [
        # macros_test.go's pre-1970 ranges; Go's Unix() floors, so .5 s before the epoch rounds down
        (
            datetime(1960, 2, 1, 7),
            datetime(1965, 2, 3, 8),
            -312915600,
            -154886400,
            "1960-02-01T07:00:00Z",
            "1965-02-03T08:00:00Z",
        ),
        (
            datetime(1960, 2, 1, 7),
            datetime(1980, 2, 3, 8),
            -312915600,
            318412800,
            "1960-02-01T07:00:00Z",
            "1980-02-03T08:00:00Z",
        ),
        (
            datetime(1960, 2, 1, 7, 0, 0, 500_000),
            datetime(1980, 2, 3, 8, 0, 0, 500_000),
            -312915600,
            318412800,
            "1960-02-01T07:00:00.5Z",
            "1980-02-03T08:00:00.5Z",
        ),
    ],
)
def test_time_ranges_before_1970(
    start: datetime, end: datetime, start_epoch: int, end_epoch: int, start_text: str, end_text: str
) -> None:
    time_range = TimeRange(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
    assert expand("WHERE $__timeFilter(time_column)", time_range) == (
        f"WHERE time_column BETWEEN '{start_text}' AND '{end_text}'"
    )
    assert expand("select $__unixEpochFilter(time)", time_range) == (
        f"select time >= {start_epoch} AND time <= {end_epoch}"
    )
    start_nano = (start.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    assert expand("select $__unixEpochNanoFrom()", time_range) == f"select {start_nano}"


def test_range_is_cut_to_milliseconds_and_shown_in_utc() -> None:
    # The browser sends whole epoch milliseconds; Go prints the fraction without trailing zeros, in UTC.
    plus_two = datetime(2018, 4, 12, 22, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=2)))
    time_range = TimeRange(plus_two, plus_two + timedelta(seconds=1))
    assert expand("$__timeFrom() $__timeTo()", time_range) == "'2018-04-12T20:00:00.123Z' '2018-04-12T20:00:01.123Z'"


@pytest.mark.parametrize(
    ("argument", "seconds"),
    [
        ("'1h'", "3600"),
        ("1h", "3600"),
        ("5m", "300"),
        ("'1h30m'", "5400"),
        ("'1.5h'", "5400"),
        ("'1d'", "86400"),
        ("'1w'", "604800"),
        ("'12d'", "1.0368e+06"),  # fmt %v switches to exponent form at 1e6
        ("'20ms'", "0.02"),
        ("'10us'", "1e-05"),
    ],
)
def test_time_group_interval_argument(argument: str, seconds: str) -> None:
    assert expand(f"$__timeGroup(t, {argument})", FIVE_MINUTES) == f"floor(extract(epoch from t)/{seconds})*{seconds}"


@pytest.mark.parametrize("unit", ["M", "y"])
def test_month_and_year_intervals_are_calendar_steps_from_now(unit: str) -> None:
    match = re.fullmatch(
        r"floor\(extract\(epoch from t\)/(\S+)\)\*\1", expand(f"$__timeGroup(t, '1{unit}')", FIVE_MINUTES)
    )
    assert match is not None
    days = float(match[1]) / 86400
    assert days in ({28.0, 29.0, 30.0, 31.0} if unit == "M" else {365.0, 366.0})


@pytest.mark.parametrize("fill", ["NULL", "previous", "0", "1.5", "-3e2", "NaN"])
def test_fill_argument_is_validated_and_left_out_of_the_sql(fill: str) -> None:
    assert (
        expand(f"$__timeGroupAlias(t, '5m', {fill})", FIVE_MINUTES) == 'floor(extract(epoch from t)/300)*300 AS "time"'
    )
    assert expand(f"$__unixEpochGroup(t, 5m, {fill})", FIVE_MINUTES) == "floor((t)/300)*300"


@pytest.mark.parametrize(
    ("raw_sql", "message"),
    [
        ("SELECT $__timeFilterr(t)", 'unknown macro "__timeFilterr"'),
        ("SELECT $__timefilter(t)", 'unknown macro "__timefilter"'),  # names are case-sensitive
        ("SELECT $undefined_function(1)", 'unknown macro "undefined_function"'),
        ("SELECT $__timeGroup(t)", "macro __timeGroup needs time column and interval and optional fill value"),
        ("SELECT $__timeGroupAlias(t)", "macro __timeGroup needs time column and interval and optional fill value"),
        ("SELECT $__timeGroup(t, '5x')", "error parsing interval '5x'"),
        ("SELECT $__timeGroup(t, 300)", "error parsing interval 300"),  # Go durations need a unit
        ('SELECT $__timeGroup(t, "5m")', 'error parsing interval "5m"'),  # only single quotes are trimmed
        ("SELECT $__timeGroup(t, '5m', zero)", "error parsing fill value zero"),
        ("SELECT $__timeGroup(t, '5m', null)", "error parsing fill value null"),  # NULL is case-sensitive
        ("SELECT $__timeGroup(t, '5m', 1e999)", "error parsing fill value 1e999"),
    ],
)
def test_errors_as_grafana_reports_them(raw_sql: str, message: str) -> None:
    with pytest.raises(MacroError) as caught:
        expand(raw_sql, FIVE_MINUTES)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_pre_5_3_alias_rule_looks_at_the_first_occurrence() -> None:
    # macros.go searches the query for the macro's text, so an identical later call inherits the first one's comma.
    group = 'floor(extract(epoch from t)/300)*300 AS "time"'
    assert expand("SELECT $__timeGroup(t,'5m'), v GROUP BY $__timeGroup(t,'5m')", FIVE_MINUTES) == (
        f"SELECT {group}, v GROUP BY {group}"
    )
    # inside a window function the call is followed by ')', so no alias
    assert expand("OVER (ORDER BY $__timeGroup(t,'5m')), $__timeGroup(t,'1h')", FIVE_MINUTES) == (
        "OVER (ORDER BY floor(extract(epoch from t)/300)*300), floor(extract(epoch from t)/3600)*3600"
    )


# --- $__interval -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_ms", "nice_ms"),
    [  # packages/grafana-data/src/datetime/rangeutil.test.ts, roundInterval
        (9, 1), (34, 20), (74, 50), (149, 100), (349, 200), (749, 500), (1499, 1000), (3499, 2000), (7499, 5000),
        (12499, 10000), (17499, 15000), (24999, 20000), (44999, 30000), (89999, 60000), (209999, 120000),
        (449999, 300000), (749999, 600000), (1049999, 900000), (1499999, 1200000), (2699999, 1800000),
        (5399999, 3600000), (8999999, 7200000), (16199999, 10800000), (32399999, 21600000), (86399999, 43200000),
        (604799999, 86400000), (1814399999, 604800000), (3628799999, 2592000000), (3628800000, 31536000000),
    ],
)  # fmt: skip
def test_interval_rounding(raw_ms: int, nice_ms: int) -> None:
    rounded = interval_for(at(raw_ms), max_data_points=1, min_interval=timedelta(0))
    assert rounded == timedelta(milliseconds=nice_ms)


@pytest.mark.parametrize(
    ("span", "points", "expected"),
    [
        (timedelta(minutes=5), 1000, timedelta(minutes=1)),  # 300 ms rounds to 200 ms, then the 1m floor
        (timedelta(hours=24), 1000, timedelta(minutes=1)),  # 86.4 s rounds down to 1m
        (timedelta(days=7), 1000, timedelta(minutes=10)),  # 604.8 s
        (timedelta(days=30), 1000, timedelta(minutes=30)),  # 2592 s
        (timedelta(days=7), 100, timedelta(hours=2)),  # 6048 s
        (timedelta(days=365), 1000, timedelta(hours=6)),  # 31536 s
    ],
)
def test_interval_for_a_panel(span: timedelta, points: int, expected: timedelta) -> None:
    assert interval_for(TimeRange(FROM, FROM + span), max_data_points=points) == expected


def test_min_interval_is_applied_after_rounding_and_not_rounded() -> None:
    interval = interval_for(FIVE_MINUTES, min_interval=timedelta(seconds=90))
    assert interval == timedelta(seconds=90)
    # $__interval prints the largest whole unit, $__interval_ms the exact value
    assert expand("$__interval $__interval_ms ${__interval} [[__interval_ms]]", FIVE_MINUTES, interval=interval) == (
        "1m 90000 1m 90000"
    )


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (timedelta(minutes=1), "1m"),
        (timedelta(seconds=30), "30s"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=1), "1d"),
        (timedelta(days=30), "30d"),
        (timedelta(days=365), "1y"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(milliseconds=1), "1ms"),
        # gtime_test.go TestFormatInterval; the browser's secondsToHms agrees on all of them
        (timedelta(seconds=61), "1m"),
        (timedelta(milliseconds=30), "30ms"),
        (timedelta(hours=23), "23h"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=367), "1y"),
        (timedelta(0), "less than a millisecond"),
    ],
)
def test_interval_text(interval: timedelta, text: str) -> None:
    assert interval_text(interval) == text


def test_interval_defaults_to_the_panel_interval() -> None:
    assert expand("$__timeGroupAlias(t, $__interval)", FIVE_MINUTES) == 'floor(extract(epoch from t)/60)*60 AS "time"'
    assert expand("$__interval_ms", TimeRange(FROM, FROM + timedelta(days=7))) == "600000"


def test_interval_keeps_a_trailing_comment() -> None:
    # macros_test.go TestInterpolateSQLCommenter, first case (query interval 10m)
    sql = "SELECT $__interval /*app='grafana',source='bi'*/"
    assert expand(sql, FIVE_MINUTES, interval=timedelta(minutes=10)) == "SELECT 10m /*app='grafana',source='bi'*/"


def test_backend_replaces_interval_prefixes_the_browser_left_alone() -> None:
    # The browser's $name regex reads $__intervalx as an unknown variable; sql_engine.go's ReplaceAll does not care.
    assert expand("$__intervalx $__interval_msx", FIVE_MINUTES) == "1mx 60000x"


def test_interval_must_be_whole_milliseconds() -> None:
    with pytest.raises(ValueError, match="whole milliseconds"):
        expand("$__interval", FIVE_MINUTES, interval=timedelta(microseconds=1500))


# --- template variables ----------------------------------------------------------------------------------------

HOST = Variable("host", ("server01",))
HOSTS = Variable("host", ("srv1", "srv2"), multi=True)


@pytest.mark.parametrize(
    ("raw_sql", "variable", "expected"),
    [  # public/app/plugins/datasource/grafana-postgresql-datasource/interpolationTruthTable.test.ts
        ("SELECT * FROM host_status WHERE host = $host", HOST, "SELECT * FROM host_status WHERE host = server01"),
        ("SELECT * FROM host_status WHERE host = '$host'", HOST, "SELECT * FROM host_status WHERE host = 'server01'"),
        (
            "SELECT * FROM host_status WHERE host IN ($host)",
            HOSTS,
            "SELECT * FROM host_status WHERE host IN ('srv1','srv2')",
        ),
        (
            "SELECT * FROM host_status WHERE host IN (${host:sqlstring})",
            HOSTS,
            "SELECT * FROM host_status WHERE host IN ('srv1','srv2')",
        ),
        (
            "SELECT * FROM host_status WHERE host IN ('$host')",
            HOSTS,
            "SELECT * FROM host_status WHERE host IN (''srv1','srv2'')",
        ),
        (
            "SELECT * FROM hosts WHERE hostname = $hostname",
            Variable("hostname", ("app1",), multi=True),
            "SELECT * FROM hosts WHERE hostname = 'app1'",
        ),
        (
            "SELECT * FROM regions WHERE region IN ($region)",
            Variable("region", ("us", "eu"), include_all=True),
            "SELECT * FROM regions WHERE region IN ('us','eu')",
        ),
        (
            "SELECT * FROM hosts WHERE hostname ILIKE '%$host%'",
            Variable("host", ("app1",)),
            "SELECT * FROM hosts WHERE hostname ILIKE '%app1%'",
        ),
        ('SELECT * FROM "$schema".orders', Variable("schema", ("public",)), 'SELECT * FROM "public".orders'),
        (
            "SELECT * FROM users WHERE name = '$user'",
            Variable("user", ("O'Brien",)),
            "SELECT * FROM users WHERE name = 'O''Brien'",
        ),
        (
            "SELECT * FROM users WHERE name IN ($users)",
            Variable("users", ("O'Brien", "D'Angelo"), multi=True),
            "SELECT * FROM users WHERE name IN ('O''Brien','D''Angelo')",
        ),
        (
            "SELECT * FROM logs WHERE message = '$msg'",
            Variable("msg", ("It's a test's message",)),
            "SELECT * FROM logs WHERE message = 'It''s a test''s message'",
        ),
        (
            "SELECT * FROM users WHERE name IN ($names)",
            Variable("names", ("O'Brien", "user.name", "test's"), multi=True),
            "SELECT * FROM users WHERE name IN ('O''Brien','user.name','test''s')",
        ),
        (
            "SELECT * FROM devices d WHERE d.region = ANY(ARRAY[$region])",
            Variable("region", ("us", "eu"), multi=True),
            "SELECT * FROM devices d WHERE d.region = ANY(ARRAY['us','eu'])",
        ),
    ],
)
def test_variables_as_in_grafanas_truth_table(raw_sql: str, variable: Variable, expected: str) -> None:
    assert expand(raw_sql, FIVE_MINUTES, variables=[variable]) == expected


def test_include_all_quotes_even_a_single_selection() -> None:
    # SqlDatasource.interpolateVariable: a string value of a multi or include-all variable goes through quoteLiteral
    region = Variable("region", ("us-east",), include_all=True)
    assert expand("region = $region", FIVE_MINUTES, variables=[region]) == "region = 'us-east'"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [  # grafana/scenes formatRegistry.test.ts
        ("sqlstring", "'test','test''value2','test\\\"value3'"),
        ("singlequote", "'test','test\\'value2','test\"value3'"),
        ("doublequote", '"test","test\'value2","test\\"value3"'),
        ("csv", "test,test'value2,test\"value3"),
        ("raw", "test,test'value2,test\"value3"),
        ("pipe", "test|test'value2|test\"value3"),
        ("glob", "{test,test'value2,test\"value3}"),
        ("json", '["test","test\'value2","test\\"value3"]'),
        ("distributed", "test,v=test'value2,v=test\"value3"),
        ("join: | ", "test | test'value2 | test\"value3"),
        ("nosuchformat", "{test,test'value2,test\"value3}"),  # Grafana falls back to glob
    ],
)
def test_formatters_on_a_multi_value(fmt: str, expected: str) -> None:
    variable = Variable("v", ("test", "test'value2", 'test"value3'), multi=True)
    assert expand(f"${{v:{fmt}}}", FIVE_MINUTES, variables=[variable]) == expected


@pytest.mark.parametrize(
    ("fmt", "value", "expected"),
    [
        ("sqlstring", "test'value", "'test''value'"),
        ("sqlstring", 'test"value', "'test\\\"value'"),
        ("singlequote", "test'2", "'test\\'2'"),
        ("doublequote", 'test"2', '"test\\"2"'),
        ("raw", "a'b", "a'b"),
        ("csv", "a'b", "a'b"),
        ("glob", "foo", "foo"),
    ],
)
def test_formatters_on_a_single_value(fmt: str, value: str, expected: str) -> None:
    assert expand(f"${{v:{fmt}}}", FIVE_MINUTES, variables=[Variable("v", (value,))]) == expected


@pytest.mark.parametrize(
    ("raw_sql", "expected"),
    [
        ("$host", "'srv1','srv2'"),
        ("${host}", "'srv1','srv2'"),
        ("[[host]]", "'srv1','srv2'"),
        ("[[host:csv]]", "srv1,srv2"),
        ("${host:csv}", "srv1,srv2"),
        ("$hostname $host_ ${hostx} [[ host ]]", "$hostname $host_ ${hostx} [[ host ]]"),  # unknown: left as written
        ("$$ $1 ${nope:csv} [[nope]]", "$$ $1 ${nope:csv} [[nope]]"),
    ],
)
def test_variable_syntaxes(raw_sql: str, expected: str) -> None:
    assert expand(raw_sql, FIVE_MINUTES, variables=[HOSTS]) == expected


def test_empty_multi_selection() -> None:
    assert expand("x IN ($host)", FIVE_MINUTES, variables=[Variable("host", (), multi=True)]) == "x IN ()"


def test_variables_are_replaced_before_macros() -> None:
    # truth table "Time bucket with interval variable", then the backend expands the macro it produced
    bucket = Variable("bucket", ("5m",))
    sql = "SELECT $__timeGroupAlias(ts, $bucket) AS time, avg(v) FROM metrics GROUP BY 1"
    assert expand(sql, FIVE_MINUTES, variables=[bucket]) == (
        'SELECT floor(extract(epoch from ts)/300)*300 AS "time" AS time, avg(v) FROM metrics GROUP BY 1'
    )
    column = Variable("column", ("created_at",))
    assert expand("WHERE $__timeFilter($column)", FIVE_MINUTES, variables=[column]) == (
        "WHERE created_at BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    )


@pytest.mark.parametrize(
    ("raw_sql", "expected"),
    [
        ("$__from AND $__to", "1523556000000 AND 1523556300000"),
        ("${__from} [[__to]]", "1523556000000 1523556300000"),
        ("${__from:date}", "2018-04-12T18:00:00.000Z"),
        ("${__from:date:iso}", "2018-04-12T18:00:00.000Z"),
        ("${__to:date:seconds}", "1523556300"),
        ("${__to:date:ms}", "1523556300000"),
        ("${__from:sqlstring}", "'1523556000000'"),
    ],
)
def test_global_time_variables(raw_sql: str, expected: str) -> None:
    assert expand(raw_sql, FIVE_MINUTES) == expected


def test_timezone_only_when_given() -> None:
    assert expand("AT TIME ZONE '$__timezone'", FIVE_MINUTES, timezone="Europe/Berlin") == (
        "AT TIME ZONE 'Europe/Berlin'"
    )
    with pytest.raises(MacroError, match=r"\$__timezone"):
        expand("AT TIME ZONE '$__timezone'", FIVE_MINUTES)


@pytest.mark.parametrize("raw_sql", ["${__user.login}", "$__dashboard", "${host:lucene}", "${__from:date:YYYY-MM}"])
def test_grafana_features_not_reimplemented_fail_loudly(raw_sql: str) -> None:
    with pytest.raises(MacroError):
        expand(raw_sql, FIVE_MINUTES, variables=[HOSTS])


def test_a_user_variable_named_like_a_macro_wins_over_it() -> None:
    assert expand("$__from", FIVE_MINUTES, variables=[Variable("__from", ("x",))]) == "x"


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="exactly one value"):
        Variable("host", ("a", "b"))
    with pytest.raises(TypeError):
        Variable("host", ["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeRange(datetime(2018, 4, 12), FROM)
    with pytest.raises(ValueError, match="given twice"):
        expand("$host", FIVE_MINUTES, variables=[HOST, HOST])
    with pytest.raises(ValueError, match="max_data_points"):
        interval_for(FIVE_MINUTES, max_data_points=0)
