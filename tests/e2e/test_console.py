"""The live console in a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium): the page loads and goes live over server-sent events, a function made with boto3
appears, an invoke moves its counters, its log tail follows, the VPC map shows two functions
sharing one Hyperplane ENI (with their sandboxes and a `lambdaplane run` program), the browser
logs no error, and in `--auth sigv4` mode the page is behind a login with the same keys.
Screenshots of the console and its VPC map go to docs/ (the README shows them)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
import pytest

from tests.conftest import live_server
from tests.e2e.vpc_support import resource
from tests.harness import REGION, LiveServer, create_python_function

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.root

# Where the screenshots go: bench-out/ by default, so a test run leaves the checkout as it was;
# LP_CONSOLE_SHOTS=docs renews the README's pictures.
SHOTS = Path(os.environ.get("LP_CONSOLE_SHOTS", "bench-out"))
WAIT_S = 30.0  # generous on a busy machine; how long it really took is printed
HANDLER = """
import json, socket
def handler(event, context):
    print("console test event", json.dumps(event))
    if "connect" in event:  # a flow through the function's ENI, to a program in the VPC
        with socket.create_connection((event["connect"], 8080), timeout=5) as s:
            return {"ok": True, "said": s.recv(100).decode()}
    return {"ok": True}
"""


# -- the browser ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (make install installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lp-console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps",
                 "--disable-domain-reliability", "--no-default-browser-check",
                 "--disable-features=Translate,OptimizationHints,MediaRouter",
                 "--disable-client-side-phishing-detection", "--no-pings",
                 "--disable-breakpad", "--metrics-recording-only",
                 # no name resolves: nothing but the loopback address the test uses is reached
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 "--window-size=1440,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()  # ends chromedriver and the browser it started
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(what: str, predicate, timeout_s: float = WAIT_S) -> float:
    """Seconds until `predicate()` held (polled every 50 ms); fails after `timeout_s`."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout_s:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception as e:  # noqa: BLE001 - the page may be re-rendering the row
            last = e
        time.sleep(0.05)
    raise AssertionError(f"the console never showed {what} (last error: {last!r})")


def cell(driver, function: str, column: str) -> str:
    """A function row's cell as shown (read in one script: the rows are redrawn live)."""
    text = driver.execute_script(
        "const td = document.querySelector(arguments[0]); return td && td.textContent;",
        f'#functions tr[data-function="{REGION}/{function}"] td[data-col="{column}"]')
    assert text is not None, f"no {column} cell for {function}"
    return text


def has_row(driver, function: str) -> bool:
    return driver.execute_script("return !!document.querySelector(arguments[0]);",
                                 f'#functions tr[data-function="{REGION}/{function}"]')


def select_function(driver, function: str) -> None:
    """Click a function's row (found again if a live redraw replaced it meanwhile)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def click() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR,
                                f'#functions tr[data-function="{REGION}/{function}"]').click()
            return True
        except StaleElementReferenceException:
            return False
    wait_for(f"{function}'s row to click", click)


def text_of(driver, selector: str) -> str:
    return driver.execute_script(
        "const el = document.querySelector(arguments[0]); return el ? el.textContent : '';",
        selector)


def browser_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_console(driver, server: LiveServer) -> None:
    from selenium.webdriver.common.by import By
    driver.get(server.endpoint + "/")
    wait_for("that it is live", lambda: driver.find_element(By.ID, "live").text == "live")


# -- the console ----------------------------------------------------------------------------

def test_function_appears_and_its_counters_and_log_move(server: LiveServer, browser) -> None:
    driver = browser
    open_console(driver, server)
    assert driver.title == "lambdaplane console"
    lam = server.lambda_()

    create_python_function(lam, "console-hello", HANDLER, wait=False)
    appeared = wait_for("the new function", lambda: has_row(driver, "console-hello"))
    print(f"\nfunction row appeared {appeared:.2f} s after CreateFunction returned")
    lam.get_waiter("function_active_v2").wait(FunctionName="console-hello",
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    wait_for("the function Active", lambda: cell(driver, "console-hello", "state") == "Active")
    assert cell(driver, "console-hello", "invocations") == "0"
    assert cell(driver, "console-hello", "p50") == "–"

    for i in range(3):
        resp = lam.invoke(FunctionName="console-hello", Payload=json.dumps({"n": i}))
        assert json.loads(resp["Payload"].read()) == {"ok": True}
    moved = wait_for("3 invocations", lambda: cell(driver, "console-hello", "invocations") == "3")
    print(f"counters moved {moved:.2f} s after the third Invoke returned")
    assert cell(driver, "console-hello", "cold_starts") == "1"
    assert cell(driver, "console-hello", "errors") == "0"
    p50, p99 = (float(cell(driver, "console-hello", c)) for c in ("p50", "p99"))
    assert 0 < p50 <= p99
    assert cell(driver, "console-hello", "environments") == "1"
    assert "console-hello" in text_of(driver, "#environments tbody")

    # versions and aliases show as they are made
    version = lam.publish_version(FunctionName="console-hello")["Version"]
    lam.create_alias(FunctionName="console-hello", Name="live", FunctionVersion=version)
    wait_for("the alias", lambda: cell(driver, "console-hello", "aliases") == f"live→{version}")
    assert cell(driver, "console-hello", "versions") == f"$LATEST, {version}"

    # the live log tail: the lines so far, then the next invoke's as they are written
    select_function(driver, "console-hello")
    wait_for("the log tail", lambda: 'console test event {"n": 2}' in text_of(driver, "#log"))
    log = text_of(driver, "#log")
    assert "START RequestId" in log and "REPORT RequestId" in log
    lam.invoke(FunctionName="console-hello", Payload=json.dumps({"n": "live"}))
    wait_for("the new log line",
             lambda: 'console test event {"n": "live"}' in text_of(driver, "#log"))
    # followed from where it was, not read again
    assert text_of(driver, "#log").count('console test event {"n": 2}') == 1
    assert browser_errors(driver) == []


def test_vpc_map_shows_two_functions_sharing_one_eni(server: LiveServer, browser) -> None:
    from selenium.webdriver.common.by import By
    driver = browser
    open_console(driver, server)
    ec2, lam = server.ec2(), server.lambda_()
    vpc = ec2.create_vpc(CidrBlock="10.91.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.91.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="console-app", Description="app",
                                      VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
         "UserIdGroupPairs": [{"GroupId": group}]}])
    config = {"SubnetIds": [subnet], "SecurityGroupIds": [group]}
    for name in ("console-orders", "console-billing"):
        create_python_function(lam, name, HANDLER, wait=False, VpcConfig=config)
    for name in ("console-orders", "console-billing"):
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={
            "Delay": 0.2, "MaxAttempts": 300})
        lam.invoke(FunctionName=name, Payload=b"{}")
    enis = ec2.describe_network_interfaces(Filters=[
        {"Name": "subnet-id", "Values": [subnet]},
        {"Name": "interface-type", "Values": ["lambda"]}])["NetworkInterfaces"]
    assert len(enis) == 1, enis  # the two functions share one Hyperplane ENI
    eni = enis[0]["NetworkInterfaceId"]

    wait_for("both functions and their sandboxes on the ENI",
             lambda: text_of(driver, f'#enis tr[data-eni="{eni}"] td[data-col="functions"]')
             == "console-billing, console-orders"
             and text_of(driver, f'#enis tr[data-eni="{eni}"] td[data-col="sandboxes"]') == "2")

    # the map itself (cytoscape's graph as the page drew it): one Hyperplane ENI node in the
    # subnet, inside the VPC, with both functions pointing at it and both sandboxes steered to it
    wait_for("the map", lambda: driver.execute_script(MAP_QUERY, eni) is not None)
    seen = driver.execute_script(MAP_QUERY, eni)
    assert seen["hyperplane_in_subnet"] == 1
    assert seen["parent"] == subnet and seen["grandparent"] == vpc
    assert sorted(seen["functions"]) == ["fn:console-billing", "fn:console-orders"]
    assert len(seen["sandboxes"]) == 2
    assert "flows" in seen["label"]

    # a `lambdaplane run` program in the same subnet shows as a resource on the map
    with resource(server, subnet, [group], ports=(8080,), name="console-db") as found:
        wait_for("the run resource", lambda: driver.execute_script(
            "const n = window.lpConsole.cy.getElementById(arguments[0]);"
            "return n.nonempty() && n.hasClass('resource') && n.parent().id() === arguments[1];",
            found.eni_id, subnet))
        # flows through the shared ENI show on it as they are tracked
        for name in ("console-orders", "console-billing"):
            said = json.loads(lam.invoke(FunctionName=name, Payload=json.dumps(
                {"connect": found.ip}))["Payload"].read())
            assert said == {"ok": True, "said": f"hello from {found.ip}"}
        wait_for("the ENI's flows", lambda: int(text_of(
            driver, f'#enis tr[data-eni="{eni}"] td[data-col="flows"]') or 0) >= 2)
        # the page and its map, as the README shows them (with a function's log tail open)
        select_function(driver, "console-orders")
        wait_for("the log tail", lambda: "START RequestId" in text_of(driver, "#log"))
        time.sleep(0.5)  # let the map's last update paint
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "console.png"))
        driver.find_element(By.ID, "map").screenshot(str(SHOTS / "console-vpc-map.png"))
    assert browser_errors(driver) == []



def test_vpc_map_shows_the_internet_and_nat_gateways_and_elastic_ips(server: LiveServer,
                                                                     browser) -> None:
    """A VPC with an attached internet gateway, a NAT gateway in its public subnet and a
    `lambdaplane run` program with an Elastic IP: all three on the map, in their places."""
    driver = browser
    open_console(driver, server)
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.94.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.94.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="console-gw", Description="gw",
                                      VpcId=vpc)["GroupId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    for_nat, for_program = (ec2.allocate_address(Domain="vpc") for _ in range(2))
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=for_nat["AllocationId"])[
        "NatGateway"]["NatGatewayId"]
    try:
        with resource(server, subnet, [group], ports=(8080,), name="console-web") as found:
            ec2.associate_address(AllocationId=for_program["AllocationId"],
                                  NetworkInterfaceId=found.eni_id)
            wait_for("the gateways on the map", lambda: driver.execute_script(
                GATEWAY_QUERY, igw, nat, found.eni_id) is not None)
            # the labels follow the state: the NAT gateway comes up, the address is associated
            wait_for("the NAT gateway available and the Elastic IP", lambda: (
                lambda seen: "available" in seen["nat_label"]
                and f"EIP {for_program['PublicIp']}" in seen["program_label"])(
                    driver.execute_script(GATEWAY_QUERY, igw, nat, found.eni_id)))
            seen = driver.execute_script(GATEWAY_QUERY, igw, nat, found.eni_id)
            assert seen["igw_parent"] == vpc and "attached" in seen["igw_label"]
            assert seen["nat_parent"] == subnet
            assert for_nat["PublicIp"] in seen["nat_label"]
            assert seen["nat_to_igw"] == [igw]  # a public NAT gateway leads to the gateway
            assert seen["nat_interface_drawn"] is False  # drawn once: as the NAT gateway
            # the state document behind it
            state = json.loads(urllib.request.urlopen(
                server.endpoint + "/_lambdaplane/console/state", timeout=10).read())
            (ours,) = [v for r in state["network"]["regions"] for v in r["vpcs"]
                       if v["id"] == vpc]
            assert ours["internet_gateways"] == [{"id": igw}]
            (shown_nat,) = ours["subnets"][0]["nat_gateways"]
            assert shown_nat["id"] == nat and shown_nat["public_ip"] == for_nat["PublicIp"]
            assert shown_nat["state"] == "available"
            (program,) = [e for e in ours["subnets"][0]["interfaces"]
                          if e["id"] == found.eni_id]
            assert program["elastic_ip"] == for_program["PublicIp"]
            assert browser_errors(driver) == []
    finally:
        ec2.delete_nat_gateway(NatGatewayId=nat)


GATEWAY_QUERY = """
const cy = window.lpConsole && window.lpConsole.cy;
if (!cy) return null;
const [igw, nat, program] = [0, 1, 2].map(i => cy.getElementById(arguments[i]));
if (igw.empty() || nat.empty() || program.empty()) return null;
const natInterface = window.lpConsole.state.network.regions.flatMap(r => r.vpcs)
  .flatMap(v => v.subnets).flatMap(s => s.nat_gateways).find(n => n.id === arguments[1]);
return {
  igw_parent: igw.parent().id(), igw_label: igw.data('label'),
  nat_parent: nat.parent().id(), nat_label: nat.data('label'),
  nat_to_igw: nat.outgoers('node').map(n => n.id()),
  nat_interface_drawn: cy.getElementById(natInterface.interface).nonempty(),
  program_label: program.data('label'),
};
"""

MAP_QUERY = """
const cy = window.lpConsole && window.lpConsole.cy;
if (!cy) return null;
const eni = cy.getElementById(arguments[0]);
if (eni.empty()) return null;
return {
  label: eni.data('label'),
  parent: eni.parent().id(),
  grandparent: eni.parent().parent().id(),
  hyperplane_in_subnet: eni.parent().children('.eni.hyperplane').length,
  functions: eni.incomers('node.function').map(n => n.id()),
  sandboxes: eni.incomers('node.sandbox').map(n => n.id()),
};
"""


# -- behind a login in --auth sigv4 mode -----------------------------------------------------

KEY_ID = "AKIDLAMBDAPLANECONSOLE"
SECRET = "console-secret/with+odd=chars"


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("lpconsoleauth")
    creds = base / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {KEY_ID}\n"
                     f"aws_secret_access_key = {SECRET}\n")
    yield from live_server(base, "--auth", "sigv4", "--credentials", str(creds))


def test_sigv4_mode_puts_the_console_behind_a_login(signed_server: LiveServer,
                                                    browser) -> None:
    from selenium.webdriver.common.by import By
    driver = browser
    # the console's data is not served without a login; the APIs still want SigV4
    for path in ("/_lambdaplane/console/state", "/_lambdaplane/console/events"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(signed_server.endpoint + path, timeout=10)
        assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(signed_server.endpoint + "/2015-03-31/functions/", timeout=10)
    assert unsigned.value.code == 403

    def login(key: str, secret: str) -> None:
        driver.delete_all_cookies()
        driver.get(signed_server.endpoint + "/")
        driver.find_element(By.NAME, "access_key").send_keys(key)
        driver.find_element(By.NAME, "secret_key").send_keys(secret)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()

    login(KEY_ID, "not-the-secret")
    wait_for("the refusal", lambda: "not in the credentials file" in
             driver.find_element(By.ID, "login").text)
    login(KEY_ID, SECRET)
    wait_for("that it is live", lambda: driver.find_element(By.ID, "live").text == "live")
    lam = boto3.client("lambda", endpoint_url=signed_server.endpoint, region_name=REGION,
                       aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                       config=botocore.config.Config(retries={"max_attempts": 1}))
    create_python_function(lam, "console-signed", HANDLER, wait=False)
    wait_for("the new function", lambda: has_row(driver, "console-signed"))
    # logging out ends the session
    driver.find_element(By.CSS_SELECTOR, "#logout button").click()
    wait_for("the login form again", lambda: driver.find_elements(By.ID, "login"))
    assert browser_errors(driver) == []


# -- routing and legacy mode (no browser needed) --------------------------------------------

@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lpconsolelegacy"), "--vpc-mode", "legacy")


def test_root_is_the_console_for_browsers_only_and_legacy_mode_has_a_map(
        legacy_server: LiveServer) -> None:
    endpoint = legacy_server.endpoint
    page = urllib.request.urlopen(urllib.request.Request(
        endpoint + "/", headers={"Accept": "text/html,*/*;q=0.8"}), timeout=10)
    assert page.headers["Content-Type"].startswith("text/html")
    assert b"lambdaplane console" in page.read()
    with pytest.raises(urllib.error.HTTPError) as api:  # not a browser: api/dispatch.py's
        urllib.request.urlopen(endpoint + "/", timeout=10)  # JSON error for a bare GET /
    assert json.loads(api.value.read())["__type"] == "UnknownServiceException"
    assert legacy_server.ec2().describe_vpcs()["Vpcs"]  # GET/POST / still EC2's

    ec2c, lam = legacy_server.ec2(), legacy_server.lambda_()
    vpc = ec2c.create_vpc(CidrBlock="10.93.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2c.create_subnet(VpcId=vpc, CidrBlock="10.93.1.0/24")["Subnet"]["SubnetId"]
    group = ec2c.create_security_group(GroupName="g", Description="g", VpcId=vpc)["GroupId"]
    create_python_function(lam, "console-legacy", HANDLER,
                           VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
    lam.invoke(FunctionName="console-legacy", Payload=b"{}")
    state = json.loads(urllib.request.urlopen(endpoint + "/_lambdaplane/console/state",
                                              timeout=10).read())
    assert state["vpc_mode"] == "legacy"
    (fn,) = state["functions"]
    assert fn["name"] == "console-legacy" and fn["invocations"] == 1
    assert fn["vpc"] == {"vpc_id": vpc, "subnets": [subnet], "groups": [group]}
    (ours,) = [v for r in state["network"]["regions"] for v in r["vpcs"] if v["id"] == vpc]
    interfaces = [e for s in ours["subnets"] for e in s["interfaces"]]
    assert interfaces and not any(e["hyperplane"] for e in interfaces)
