"""The argument types every command line shares: what they accept, and a one-line refusal."""

from __future__ import annotations

import argparse

import pytest

from jersey_ray import cli
from jersey_ray.errors import run_cli


@pytest.mark.parametrize(
    ("text", "expected"),
    [("192x96", (192, 96)), ("8X8", (8, 8)), (" 64 x 32 ", (64, 32))],
)
def test_size_accepts(text, expected):
    assert cli.size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192", "is not HEIGHTxWIDTH"),
        ("192x", "is not HEIGHTxWIDTH"),
        ("axb", "is not HEIGHTxWIDTH"),
        ("1x2x3", "is not HEIGHTxWIDTH"),
        ("7x96", "at least 8x8"),
        ("192x0", "at least 8x8"),
        ("-16x16", "at least 8x8"),
    ],
)
def test_size_refuses(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        cli.size(text)


def test_ints_and_positive_ints():
    assert cli.ints("42,123") == (42, 123)
    assert cli.ints("-1, 0,") == (-1, 0)  # blanks between commas are skipped
    assert cli.positive_ints("16,1,4") == (16, 1, 4)  # order kept: callers decide
    for bad, message in (("4,x", "expected integers"), ("", "at least one"), (",", "at least")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            cli.ints(bad)
    for bad in ("1,0", "-4", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
            cli.positive_ints(bad)


def test_positive_int():
    assert cli.positive_int("1") == 1 and cli.positive_int("16") == 16
    for bad in ("0", "-3", "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="whole number >= 1"):
            cli.positive_int(bad)


def test_numbers_keep_the_folder_strings():
    assert cli.numbers("4,07, 48") == ("4", "07", "48")
    assert cli.numbers("7,07,00") == ("7", "07", "00")  # 7 and 07 are distinct classes
    for bad in ("123", "4,x", "", ",", "4,-1", "٣"):
        with pytest.raises(argparse.ArgumentTypeError, match="1-2 digit jersey numbers"):
            cli.numbers(bad)


def test_a_bad_value_is_argparses_usage_error(capsys):
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--size", type=cli.size)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--size", "big"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "demo: error: argument --size: 'big' is not HEIGHTxWIDTH, e.g. 192x96"


def test_one_line_parser_errors_go_through_run_cli(capsys):
    parser = cli.OneLineParser(prog="demo")
    parser.add_argument("--size", type=cli.size, required=True)

    def parse(argv: list[str]) -> int:
        parser.parse_args(argv)
        return 0

    assert run_cli(lambda: parse(["--size", "16x8"])) == 0
    for argv, message in ((["--size", "big"], "'big' is not HEIGHTxWIDTH"), ([], "--size")):
        assert run_cli(lambda argv=argv: parse(argv)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
        assert err.rstrip().endswith("(see --help)")
