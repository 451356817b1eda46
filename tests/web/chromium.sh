#!/bin/sh
# The browser tests' Chromium: $MASSAGED_CHROMIUM_BINARY, with the features named in
# $MASSAGED_CHROMIUM_FEATURES_OFF turned off beside those Playwright turns off.
#
# Chromium obeys only the last --disable-features switch, so one more on the command
# line would undo Playwright's list: the names are added to that list instead.
added=
for arg do
    shift
    case $arg in
        --disable-features=*)
            arg="$arg,$MASSAGED_CHROMIUM_FEATURES_OFF"
            added=1
            ;;
    esac
    set -- "$@" "$arg"
done
[ -n "$added" ] || set -- "$@" "--disable-features=$MASSAGED_CHROMIUM_FEATURES_OFF"
exec "$MASSAGED_CHROMIUM_BINARY" "$@"
