"""Tests against real peers (rsyslog, HTTP servers) started by the tests on 127.0.0.1."""
