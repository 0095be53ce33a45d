"""Code.S3Bucket/S3Key/S3ObjectVersion on CreateFunction and UpdateFunctionCode, fetched from a
real S3-compatible server (moto's server mode, started here on loopback) that the platform is
pointed at with `serve --s3-endpoint`; layer content (PublishLayerVersion Content.S3Bucket/S3Key/
S3ObjectVersion) from the same server; and Lambda's errors for a missing bucket, key or version,
or for a server started without an S3 endpoint."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.harness import REGION, LiveServer, free_port, make_zip

pytestmark = pytest.mark.root

V1 = make_zip({"app.py": "def handler(event, context):\n    return 'from s3 v1'\n"})
V2 = make_zip({"app.py": "def handler(event, context):\n    return 'from s3 v2'\n"})


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION,
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="code")
    s3.put_bucket_versioning(Bucket="code", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="code", Key="fn.zip", Body=V1)["VersionId"]
    s3.put_object(Bucket="code", Key="fn.zip", Body=V2)
    return {"first": first}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[LiveServer]:
    """The server reads S3 with the credentials of its environment, as an operator sets them."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test")
        yield from live_server(tmp_path_factory.mktemp("lps3"), "--s3-endpoint", s3_endpoint)


def lambda_error(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def invoke(lam, name: str) -> str:
    return lam.invoke(FunctionName=name)["Payload"].read().decode()


def wait(lam, name: str, waiter: str = "function_active_v2") -> None:
    lam.get_waiter(waiter).wait(FunctionName=name, WaiterConfig={"Delay": 0.2,
                                                                 "MaxAttempts": 100})


def test_create_and_update_from_s3(server: LiveServer, bucket: dict[str, str]) -> None:
    lam = server.lambda_()
    created = lam.create_function(FunctionName="s3fn", Runtime="python3.11",
                                  Handler="app.handler",
                                  Role="arn:aws:iam::000000000000:role/lambda",
                                  Code={"S3Bucket": "code", "S3Key": "fn.zip"})
    wait(lam, "s3fn")
    assert invoke(lam, "s3fn") == '"from s3 v2"'  # the latest version of the object
    assert created["CodeSize"] == len(V2)
    lam.update_function_code(FunctionName="s3fn", S3Bucket="code", S3Key="fn.zip",
                             S3ObjectVersion=bucket["first"])
    wait(lam, "s3fn", "function_updated_v2")
    assert invoke(lam, "s3fn") == '"from s3 v1"'
    lam.delete_function(FunctionName="s3fn")


def test_missing_bucket_key_or_version(server: LiveServer, bucket: dict[str, str]) -> None:
    lam = server.lambda_()
    base = dict(FunctionName="s3bad", Runtime="python3.11", Handler="app.handler",
                Role="arn:aws:iam::000000000000:role/lambda")
    assert lambda_error(lam.create_function, Code={"S3Bucket": "code", "S3Key": "nosuch.zip"},
                        **base) == (
        "InvalidParameterValueException",
        "Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The "
        "specified key does not exist.")
    assert lambda_error(lam.create_function, Code={"S3Bucket": "nosuch", "S3Key": "fn.zip"},
                        **base) == (
        "InvalidParameterValueException",
        "Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: The "
        "specified bucket does not exist")
    code, message = lambda_error(lam.create_function, Code={
        "S3Bucket": "code", "S3Key": "fn.zip", "S3ObjectVersion": "nosuchversion"}, **base)
    assert code == "InvalidParameterValueException"
    assert message.startswith("Error occurred while GetObject. S3 Error Code: ")
    assert lambda_error(lam.create_function, Code={"S3Bucket": "code"}, **base)[0] == \
        "InvalidParameterValueException"
    with pytest.raises(ClientError):
        lam.get_function(FunctionName="s3bad")  # nothing was created


def test_without_an_s3_endpoint(fresh_server: LiveServer) -> None:
    code, message = lambda_error(
        fresh_server.lambda_().create_function, FunctionName="nos3", Runtime="python3.11",
        Handler="app.handler", Role="arn:aws:iam::000000000000:role/lambda",
        Code={"S3Bucket": "code", "S3Key": "fn.zip"})
    assert code == "InvalidParameterValueException" and "--s3-endpoint" in message


LAYER = make_zip({"python/s3layermod.py": "WHERE = 'layer from s3'\n"})
LAYER_USER = make_zip({"app.py": "import s3layermod\n\n"
                                 "def handler(event, context):\n"
                                 "    return [s3layermod.WHERE, s3layermod.__file__]\n"})


@pytest.fixture(scope="module")
def layer_bucket(s3_endpoint: str) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION,
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="layers")
    s3.put_bucket_versioning(Bucket="layers", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="layers", Key="layer.zip", Body=LAYER)["VersionId"]
    s3.put_object(Bucket="layers", Key="layer.zip", Body=b"no longer a zip")
    s3.put_object(Bucket="layers", Key="notazip.zip", Body=b"not a zip")
    return {"first": first}


def test_layer_content_from_s3_is_importable(server: LiveServer,
                                             layer_bucket: dict[str, str]) -> None:
    lam = server.lambda_()
    published = lam.publish_layer_version(
        LayerName="s3layer", CompatibleRuntimes=["python3.11"],
        Content={"S3Bucket": "layers", "S3Key": "layer.zip",
                 "S3ObjectVersion": layer_bucket["first"]})
    assert published["Content"]["CodeSize"] == len(LAYER)
    assert published["Version"] == 1
    got = lam.get_layer_version(LayerName="s3layer", VersionNumber=1)
    assert got["Content"]["CodeSha256"] == published["Content"]["CodeSha256"]
    lam.create_function(FunctionName="s3layeruser", Runtime="python3.11", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"ZipFile": LAYER_USER},
                        Layers=[published["LayerVersionArn"]])
    try:
        wait(lam, "s3layeruser")
        assert invoke(lam, "s3layeruser") == \
            '["layer from s3", "/opt/python/s3layermod.py"]'
    finally:
        lam.delete_function(FunctionName="s3layeruser")
        lam.delete_layer_version(LayerName="s3layer", VersionNumber=1)


def test_layer_content_from_s3_errors(server: LiveServer,
                                      layer_bucket: dict[str, str]) -> None:
    lam = server.lambda_()

    def publish_error(content: dict) -> tuple[str, str]:
        return lambda_error(lam.publish_layer_version, LayerName="s3badlayer", Content=content)

    assert publish_error({"S3Bucket": "layers", "S3Key": "nosuch.zip"}) == (
        "InvalidParameterValueException",
        "Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The "
        "specified key does not exist.")
    assert publish_error({"S3Bucket": "nosuch", "S3Key": "layer.zip"}) == (
        "InvalidParameterValueException",
        "Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: The "
        "specified bucket does not exist")
    code, message = publish_error({"S3Bucket": "layers", "S3Key": "layer.zip",
                                   "S3ObjectVersion": "nosuchversion"})
    assert code == "InvalidParameterValueException"
    assert message.startswith("Error occurred while GetObject. S3 Error Code: ")
    code, message = publish_error({"S3Bucket": "layers"})
    assert code == "InvalidParameterValueException"
    assert "both S3Bucket and S3Key are required for layer content" in message
    code, message = publish_error({"S3Key": "layer.zip", "ZipFile": LAYER})
    assert (code, message) == ("InvalidParameterValueException",
                               "Please do not provide other LayerVersionContentInput "
                               "parameters when providing a ZipFile.")
    # the same zip checks as an uploaded layer: the latest object is not a zip
    zip_error = lambda_error(lam.publish_layer_version, LayerName="s3badlayer",
                             Content={"ZipFile": b"not a zip"})
    assert publish_error({"S3Bucket": "layers", "S3Key": "layer.zip"}) == zip_error
    assert publish_error({"S3Bucket": "layers", "S3Key": "notazip.zip"}) == zip_error
    assert lam.list_layer_versions(LayerName="s3badlayer")["LayerVersions"] == []


def test_layer_content_without_an_s3_endpoint(fresh_server: LiveServer) -> None:
    code, message = lambda_error(fresh_server.lambda_().publish_layer_version,
                                 LayerName="nos3layer",
                                 Content={"S3Bucket": "layers", "S3Key": "layer.zip"})
    assert code == "InvalidParameterValueException"
    assert message == ("Layer content from S3 needs an S3 endpoint: start the server with "
                       "`lambdaplane serve --s3-endpoint URL`, or upload the zip with "
                       "Content.ZipFile.")
