"""The [mpps] settings: forwarding peers are validated at start-up."""
import pytest

from broker.config import ConfigError, load_settings


@pytest.mark.parametrize("value, ok", [
    ("PACS@127.0.0.1:104", True), ("RIS@ris.example.org:11112,PACS@10.0.0.1:104", True),
    ("PACS127.0.0.1:104", False), ("PACS@127.0.0.1", False), ("@h:1", False),
    ("PACS@h:0", False), ("ABCDEFGHIJKLMNOPQ@h:104", False),
])
def test_mpps_forward_to_is_validated(value, ok):
    environ = {"BROKER_MPPS_FORWARD_TO": value}
    if ok:
        assert load_settings(None, environ, None).mpps.forward_to == tuple(value.split(","))
    else:
        with pytest.raises(ConfigError, match="mpps.forward_to"):
            load_settings(None, environ, None)


def test_housekeeping_is_off_by_default():
    worklist = load_settings(None, {}, None).worklist
    assert (worklist.auto_cancel_after_days, worklist.purge_after_days) == (0, 0)
