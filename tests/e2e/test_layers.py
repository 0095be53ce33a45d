"""Layers through boto3 against a live server: publish/get/list/delete of layer versions with
AWS's ARNs, filters and errors, layer version permissions, and a function's `Layers` merged
in order into a read-only /opt that its Python code imports from; the 250 MB limit over code
plus layers; a deleted layer version still serving the function that uses it."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import urllib.request
import zipfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function, make_zip

pytestmark = pytest.mark.root

ACCOUNT = "000000000000"
APP = """
import errno, os, sys
import shared

def handler(event, context):
    try:
        open("/opt/python/new.py", "w")
        writable = True
    except OSError as e:
        writable = e.errno != errno.EROFS
    from_a = None
    try:
        import only_a
        from_a = only_a.VALUE
    except ImportError:
        pass
    return {"shared": shared.VALUE, "only_a": from_a, "writable": writable,
            "tool": open("/opt/bin/tool").read(), "lib": sorted(os.listdir("/opt/lib")),
            "path": os.environ["PATH"], "ld": os.environ["LD_LIBRARY_PATH"],
            "sys_path": [p for p in sys.path if p.startswith("/opt")]}
"""


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def _publish(lam, name: str, files: dict[str, str | bytes], **kwargs: object) -> dict:
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": make_zip(files)},
                                     **kwargs)


def test_layer_versions_arns_and_lists(server: LiveServer) -> None:
    lam = server.lambda_()
    first = _publish(lam, "ly-lib", {"python/x.py": "X = 1\n"}, Description="first",
                     CompatibleRuntimes=["python3.11"], CompatibleArchitectures=["x86_64"],
                     LicenseInfo="MIT")
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:ly-lib"
    assert first["LayerArn"] == arn and first["LayerVersionArn"] == f"{arn}:1"
    assert first["Version"] == 1 and first["Description"] == "first"
    assert first["LicenseInfo"] == "MIT" and first["CompatibleRuntimes"] == ["python3.11"]
    assert first["Content"]["CodeSize"] > 0 and first["Content"]["CodeSha256"]
    second = _publish(lam, arn, {"python/x.py": "X = 2\n"}, CompatibleRuntimes=["python3.12"])
    assert second["Version"] == 2
    got = lam.get_layer_version(LayerName="ly-lib", VersionNumber=1)
    assert got["LayerVersionArn"] == f"{arn}:1" and got["CreatedDate"] == first["CreatedDate"]
    by_arn = lam.get_layer_version_by_arn(Arn=f"{arn}:2")
    assert by_arn["Version"] == 2 and by_arn["Content"]["CodeSha256"] == \
        second["Content"]["CodeSha256"]
    versions = lam.list_layer_versions(LayerName="ly-lib")["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    assert [v["Version"] for v in lam.list_layer_versions(
        LayerName="ly-lib", CompatibleRuntime="python3.11")["LayerVersions"]] == [1]
    page = lam.list_layer_versions(LayerName="ly-lib", MaxItems=1)
    assert [v["Version"] for v in page["LayerVersions"]] == [2]
    rest = lam.list_layer_versions(LayerName="ly-lib", Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["LayerVersions"]] == [1] and "NextMarker" not in rest
    layers = {layer["LayerName"]: layer for layer in lam.list_layers()["Layers"]}
    assert layers["ly-lib"]["LatestMatchingVersion"]["Version"] == 2
    assert layers["ly-lib"]["LayerArn"] == arn
    filtered = {layer["LayerName"]: layer for layer in lam.list_layers(
        CompatibleRuntime="python3.11", CompatibleArchitecture="x86_64")["Layers"]}
    assert filtered["ly-lib"]["LatestMatchingVersion"]["Version"] == 1
    # the content is downloadable, as a function's code is
    with urllib.request.urlopen(got["Content"]["Location"], timeout=30) as resp:
        downloaded = resp.read()
    assert base64.b64encode(hashlib.sha256(downloaded).digest()).decode() == \
        got["Content"]["CodeSha256"]
    # deleting is idempotent; a deleted number is never reused
    lam.delete_layer_version(LayerName="ly-lib", VersionNumber=2)
    lam.delete_layer_version(LayerName="ly-lib", VersionNumber=2)
    err = _error(lambda: lam.get_layer_version(LayerName="ly-lib", VersionNumber=2))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert _publish(lam, "ly-lib", {"python/x.py": "X = 3\n"})["Version"] == 3
    assert lam.list_layer_versions(LayerName="ly-nothing")["LayerVersions"] == []


def test_layer_errors(server: LiveServer) -> None:
    lam = server.lambda_()
    err = _error(lambda: lam.get_layer_version_by_arn(
        Arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:ly-missing:1"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    err = _error(lambda: lam.publish_layer_version(LayerName="bad name!",
                                                   Content={"ZipFile": make_zip({"a": "b"})}))
    assert err["Error"]["Code"] == "ValidationException"
    err = _error(lambda: lam.publish_layer_version(LayerName="ly-bad",
                                                   Content={"ZipFile": b"not a zip"}))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    err = _error(lambda: lam.publish_layer_version(
        LayerName="ly-bad", Content={"ZipFile": make_zip({"../evil": "x"})}))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    err = _error(lambda: lam.publish_layer_version(
        LayerName="ly-bad", Content={"ZipFile": make_zip({"a": "b"})},
        CompatibleRuntimes=["cobol85"]))
    assert err["Error"]["Code"] == "ValidationException"


def test_layer_version_permissions(server: LiveServer) -> None:
    lam = server.lambda_()
    _publish(lam, "ly-perm", {"python/p.py": ""})
    err = _error(lambda: lam.get_layer_version_policy(LayerName="ly-perm", VersionNumber=1))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    added = lam.add_layer_version_permission(
        LayerName="ly-perm", VersionNumber=1, StatementId="everyone",
        Action="lambda:GetLayerVersion", Principal="*", OrganizationId="o-abcdefghij")
    statement = json.loads(added["Statement"])
    assert statement == {
        "Sid": "everyone", "Effect": "Allow", "Principal": "*",
        "Action": "lambda:GetLayerVersion",
        "Resource": f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:ly-perm:1",
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}}
    second = lam.add_layer_version_permission(
        LayerName="ly-perm", VersionNumber=1, StatementId="acct",
        Action="lambda:GetLayerVersion", Principal="123456789012",
        RevisionId=added["RevisionId"])
    assert json.loads(second["Statement"])["Principal"] == {
        "AWS": "arn:aws:iam::123456789012:root"}
    err = _error(lambda: lam.add_layer_version_permission(
        LayerName="ly-perm", VersionNumber=1, StatementId="acct",
        Action="lambda:GetLayerVersion", Principal="*"))
    assert err["Error"]["Code"] == "ResourceConflictException"
    err = _error(lambda: lam.add_layer_version_permission(
        LayerName="ly-perm", VersionNumber=1, StatementId="late",
        Action="lambda:GetLayerVersion", Principal="*", RevisionId=added["RevisionId"]))
    assert err["Error"]["Code"] == "PreconditionFailedException"
    err = _error(lambda: lam.add_layer_version_permission(
        LayerName="ly-perm", VersionNumber=1, StatementId="wrong",
        Action="lambda:InvokeFunction", Principal="*"))
    assert err["Error"]["Code"] == "ValidationException"
    err = _error(lambda: lam.add_layer_version_permission(
        LayerName="ly-perm", VersionNumber=9, StatementId="x",
        Action="lambda:GetLayerVersion", Principal="*"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    policy = lam.get_layer_version_policy(LayerName="ly-perm", VersionNumber=1)
    assert policy["RevisionId"] == second["RevisionId"]
    assert [s["Sid"] for s in json.loads(policy["Policy"])["Statement"]] == ["everyone", "acct"]
    lam.remove_layer_version_permission(LayerName="ly-perm", VersionNumber=1,
                                        StatementId="everyone")
    err = _error(lambda: lam.remove_layer_version_permission(
        LayerName="ly-perm", VersionNumber=1, StatementId="everyone"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    assert [s["Sid"] for s in json.loads(lam.get_layer_version_policy(
        LayerName="ly-perm", VersionNumber=1)["Policy"])["Statement"]] == ["acct"]


def test_function_layers_merged_into_read_only_opt(server: LiveServer) -> None:
    lam = server.lambda_()
    a = _publish(lam, "ly-a", {"python/shared.py": "VALUE = 'a'\n",
                               "python/only_a.py": "VALUE = 'only a'\n",
                               "bin/tool": "from a\n", "lib/liba.so": "a"})
    b = _publish(lam, "ly-b", {"python/shared.py": "VALUE = 'b'\n", "bin/tool": "from b\n",
                               "lib/libb.so": "b"})
    created = create_python_function(lam, "ly-fn", APP,
                                     Layers=[a["LayerVersionArn"], b["LayerVersionArn"]])
    assert created["Layers"] == [
        {"Arn": a["LayerVersionArn"], "CodeSize": a["Content"]["CodeSize"]},
        {"Arn": b["LayerVersionArn"], "CodeSize": b["Content"]["CodeSize"]}]
    out = json.loads(lam.invoke(FunctionName="ly-fn")["Payload"].read())
    assert out["shared"] == "b" and out["only_a"] == "only a"  # the later layer wins
    assert out["tool"] == "from b\n" and out["lib"] == ["liba.so", "libb.so"]
    assert not out["writable"]
    assert "/opt/bin" in out["path"].split(":") and "/opt/lib" in out["ld"].split(":")
    assert "/opt/python" in out["sys_path"]
    # order reversed: a over b
    lam.update_function_configuration(FunctionName="ly-fn",
                                      Layers=[b["LayerVersionArn"], a["LayerVersionArn"]])
    lam.get_waiter("function_updated_v2").wait(FunctionName="ly-fn",
                                               WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    out = json.loads(lam.invoke(FunctionName="ly-fn")["Payload"].read())
    assert out["shared"] == "a" and out["tool"] == "from a\n"
    # a deleted layer version keeps serving the function that uses it (even a cold start)...
    lam.delete_layer_version(LayerName="ly-a", VersionNumber=a["Version"])
    lam.update_function_configuration(FunctionName="ly-fn", Description="cold again")
    lam.get_waiter("function_updated_v2").wait(FunctionName="ly-fn",
                                               WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    out = json.loads(lam.invoke(FunctionName="ly-fn")["Payload"].read())
    assert out["shared"] == "a" and out["only_a"] == "only a"
    assert [layer["Arn"] for layer in lam.get_function_configuration(
        FunctionName="ly-fn")["Layers"]] == [b["LayerVersionArn"], a["LayerVersionArn"]]
    # ...but no new function can take it
    err = _error(lambda: create_python_function(lam, "ly-fn2", APP,
                                                Layers=[a["LayerVersionArn"]]))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert err["Error"]["Message"] == f"Layer version {a['LayerVersionArn']} does not exist."
    # no layers: an empty /opt (shared is not importable)
    lam.update_function_configuration(FunctionName="ly-fn", Layers=[])
    lam.get_waiter("function_updated_v2").wait(FunctionName="ly-fn",
                                               WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    assert "Layers" not in lam.get_function_configuration(FunctionName="ly-fn")
    resp = lam.invoke(FunctionName="ly-fn")
    assert resp["FunctionError"] == "Unhandled"
    assert "shared" in json.loads(resp["Payload"].read())["errorMessage"]


def test_function_layer_errors(server: LiveServer) -> None:
    lam = server.lambda_()
    versions = [_publish(lam, "ly-many", {f"python/m{i}.py": ""})["LayerVersionArn"]
                for i in range(2)]
    others = [_publish(lam, f"ly-many{i}", {"python/o.py": ""})["LayerVersionArn"]
              for i in range(6)]
    err = _error(lambda: create_python_function(lam, "ly-bad", APP, Layers=others))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert err["Error"]["Message"] == "Cannot reference more than 5 layers."
    err = _error(lambda: create_python_function(lam, "ly-bad", APP, Layers=versions))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    err = _error(lambda: create_python_function(
        lam, "ly-bad", APP, Layers=[f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:ly-many"]))
    assert err["Error"]["Code"] == "ValidationException"
    err = _error(lambda: create_python_function(
        lam, "ly-bad", APP, Layers=[f"arn:aws:lambda:eu-west-1:{ACCOUNT}:layer:ly-many:1"]))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError):
        lam.get_function(FunctionName="ly-bad")


def _deflated(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def test_code_plus_layers_over_250mb_is_refused(server: LiveServer) -> None:
    lam = server.lambda_()
    big = b"\0" * (130 * 1024 * 1024)
    one = lam.publish_layer_version(LayerName="ly-big1",
                                    Content={"ZipFile": _deflated("one.bin", big)})
    two = lam.publish_layer_version(LayerName="ly-big2",
                                    Content={"ZipFile": _deflated("two.bin", big)})
    create_python_function(lam, "ly-small", "def handler(e, c):\n    return 1\n",
                           Layers=[one["LayerVersionArn"]])
    err = _error(lambda: create_python_function(
        lam, "ly-huge", "def handler(e, c):\n    return 1\n",
        Layers=[one["LayerVersionArn"], two["LayerVersionArn"]]))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert err["Error"]["Message"].startswith(
        "Function code combined with layers exceeds the maximum allowed size of 262144000 "
        "bytes. The actual size is ")
    err = _error(lambda: lam.update_function_configuration(
        FunctionName="ly-small", Layers=[one["LayerVersionArn"], two["LayerVersionArn"]]))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert [layer["Arn"] for layer in lam.get_function_configuration(
        FunctionName="ly-small")["Layers"]] == [one["LayerVersionArn"]]


def test_layers_without_preforked_sandboxes(tmp_path: Path) -> None:
    """The zygote's own spawn path (no pre-forked sandbox) mounts /opt the same way."""
    with contextlib.contextmanager(live_server)(tmp_path, "--prefork", "0") as server:
        lam = server.lambda_()
        a = _publish(lam, "ly-a", {"python/shared.py": "VALUE = 'a'\n", "bin/tool": "t",
                                   "lib/l.so": ""})
        create_python_function(lam, "ly-fn", APP, Layers=[a["LayerVersionArn"]])
        out = json.loads(lam.invoke(FunctionName="ly-fn")["Payload"].read())
        assert out["shared"] == "a" and out["tool"] == "t" and not out["writable"]
