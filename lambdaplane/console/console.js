// lambdaplane console: renders the server's state document (pushed by server-sent events from
// /_lambdaplane/console/events) into tables, a live log tail, and a cytoscape VPC map.
"use strict";

(function () {
  const EVENTS = "/_lambdaplane/console/events";
  const lp = { state: null, selected: "", source: null, cy: null, graphKey: "" };
  window.lpConsole = lp;  // for people poking at it in devtools (and the browser test)

  const $ = (sel) => document.querySelector(sel);
  const fmt = (v, digits) => (v === null || v === undefined) ? "–" :
    (typeof v === "number" && digits !== undefined ? v.toFixed(digits) : String(v));

  function cell(tr, text, cls, col) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (col) td.dataset.col = col;
    tr.appendChild(td);
    return td;
  }

  function fill(tbody, rows, build) {
    tbody.replaceChildren(...rows.map(build));
  }

  // -- functions --------------------------------------------------------------------------
  function renderFunctions(state) {
    $("#no-functions").hidden = state.functions.length > 0;
    fill($("#functions tbody"), state.functions, (f) => {
      const tr = document.createElement("tr");
      const key = f.region + "/" + f.name;
      tr.dataset.function = key;
      if (key === lp.selected) tr.className = "selected";
      cell(tr, f.name, "name", "name").title = f.arn;
      cell(tr, f.state + (f.last_update_status !== "Successful" ? " (" + f.last_update_status + ")" : ""),
           "state " + f.state.toLowerCase(), "state").title = f.state_reason || "";
      cell(tr, f.runtime, "", "runtime");
      cell(tr, ["$LATEST"].concat(f.versions).join(", "), "", "versions");
      cell(tr, f.aliases.map((a) => a.name + "→" + a.version +
        Object.entries(a.weights).map(([v, w]) => " +" + v + "@" + w).join("")).join(", ") || "–",
        "", "aliases");
      cell(tr, fmt(f.invocations), "n", "invocations");
      cell(tr, fmt(f.errors), f.errors ? "n bad" : "n", "errors");
      cell(tr, fmt(f.throttles), f.throttles ? "n bad" : "n", "throttles");
      cell(tr, fmt(f.p50_ms, 2), "n", "p50");
      cell(tr, fmt(f.p99_ms, 2), "n", "p99");
      cell(tr, fmt(f.concurrency) + (f.reserved_concurrency !== null ? " / " + f.reserved_concurrency : ""),
           "n", "concurrency");
      cell(tr, fmt(f.cold_starts), "n", "cold_starts");
      cell(tr, fmt(f.environments), "n", "environments");
      cell(tr, f.vpc ? f.vpc.vpc_id || "" : "–", "mono", "vpc").title =
        f.vpc ? "subnets " + f.vpc.subnets.join(", ") + "; groups " + f.vpc.groups.join(", ") : "";
      return tr;
    });
  }

  function renderEnvironments(state) {
    const ex = state.execution;
    const envStates = Object.entries(ex.environments || {}).map(([k, v]) => v + " " + k).join(", ");
    $("#summary").textContent = "in flight " + ex.in_flight + " · environments " + (envStates || "none");
    $("#pool").textContent = "sandbox pool: " + fmt(ex.pool_ready) + " ready of " + fmt(ex.pool_target) +
      " · in use " + fmt(ex.sandboxes_in_use);
    fill($("#environments tbody"), state.environments, (e) => {
      const tr = document.createElement("tr");
      tr.dataset.env = e.id;
      cell(tr, e.id, "mono");
      cell(tr, e.function);
      cell(tr, e.version);
      cell(tr, e.state, "state " + e.state);
      cell(tr, e.sandbox, "mono");
      cell(tr, e.eni || "–", "mono");
      cell(tr, e.state === "idle" ? new Date(e.idle_since * 1000).toLocaleTimeString() : "–", "n");
      cell(tr, e.log_stream, "mono small");
      return tr;
    });
  }

  // -- VPC map ----------------------------------------------------------------------------
  function interfaces(state) {
    const out = [];
    for (const region of state.network.regions)
      for (const vpc of region.vpcs)
        for (const subnet of vpc.subnets)
          for (const eni of subnet.interfaces) out.push({ region: region.region, vpc, subnet, eni });
    return out;
  }

  function eniKind(eni) {
    if (eni.hyperplane) return "hyperplane";
    if (eni.run_resource) return "resource";
    return "interface";
  }

  // "/usr/bin/python3 -u -c …" → "python3 -u -c …", at most 32 characters
  function program(argv) {
    const words = argv.split(" ");
    words[0] = words[0].split("/").pop();
    const text = words.join(" ");
    return text.length > 32 ? text.slice(0, 31) + "…" : text;
  }

  function eniLabel(eni) {
    const kind = eniKind(eni);
    if (kind === "hyperplane")
      return eni.id + "\n" + eni.ip + "\n" + eni.flows + " flows · " + eni.sandboxes.length + " sandboxes";
    const eip = eni.elastic_ip ? " · EIP " + eni.elastic_ip : "";
    if (kind === "resource")
      return "▶ " + (eni.name || eni.id) + "\n" + eni.ip + eip + (eni.argv ? "\n" + program(eni.argv) : "");
    return eni.id + "\n" + eni.ip + eip;
  }

  function natLabel(nat) {
    return "NAT " + nat.id + "\n" + (nat.public_ip ? nat.public_ip + " → " : "") + nat.private_ip +
      "\n" + nat.connectivity + " · " + nat.state;
  }

  // A default VPC (six empty subnets on a fresh server) only once something is in it.
  function shownVpcs(region) {
    return region.vpcs.filter((vpc) => !vpc.default || vpc.subnets.some((s) => s.interfaces.length));
  }

  function mapElements(state) {
    const nodes = [], edges = [];
    const envOf = {};
    const natInterfaces = new Set();  // a NAT gateway's interface is drawn as the NAT gateway
    for (const e of state.environments) envOf[e.sandbox] = e;
    for (const region of state.network.regions)
      for (const vpc of shownVpcs(region)) {
        nodes.push({ data: { id: vpc.id, label: vpc.id + "  " + vpc.cidr + (vpc.default ? " (default)" : "") }, classes: "vpc" });
        for (const subnet of vpc.subnets)
          nodes.push({ data: { id: subnet.id, parent: vpc.id, label: subnet.id + "\n" + subnet.cidr + " · " + subnet.az }, classes: "subnet" });
        // the internet gateway attached to the VPC; each NAT gateway in its subnet, leading to it
        const igws = vpc.internet_gateways || [];
        for (const igw of igws)
          nodes.push({ data: { id: igw.id, parent: vpc.id, label: "⇅ " + igw.id + "\ninternet gateway · attached" }, classes: "igw" });
        for (const subnet of vpc.subnets)
          for (const nat of subnet.nat_gateways || []) {
            natInterfaces.add(nat.interface);
            nodes.push({ data: { id: nat.id, parent: subnet.id, label: natLabel(nat) }, classes: "nat " + nat.state });
            if (nat.connectivity === "public")
              for (const igw of igws)
                edges.push({ data: { id: nat.id + ">" + igw.id, source: nat.id, target: igw.id }, classes: "egress" });
          }
      }
    const functionNodes = new Set();
    for (const { subnet, eni } of interfaces(state)) {
      if (natInterfaces.has(eni.id)) continue;
      const kind = eniKind(eni);
      nodes.push({ data: { id: eni.id, parent: subnet.id, label: eniLabel(eni), flows: eni.flows || 0 }, classes: "eni " + kind });
      if (kind !== "hyperplane") continue;
      for (const fn of eni.functions) {
        const id = "fn:" + fn;
        if (!functionNodes.has(id)) {
          functionNodes.add(id);
          nodes.push({ data: { id, label: "λ " + fn }, classes: "function" });
        }
        edges.push({ data: { id: id + ">" + eni.id, source: id, target: eni.id }, classes: "uses" });
      }
      for (const address of eni.sandboxes) {
        const env = envOf[address];
        const id = "sb:" + address;
        nodes.push({ data: { id, label: address + (env ? "\n" + env.function + " · " + env.state : "") }, classes: "sandbox" });
        edges.push({ data: { id: id + ">" + eni.id, source: id, target: eni.id }, classes: "steered" });
      }
    }
    return nodes.concat(edges);
  }

  const MAP_STYLE = [
    { selector: "node", style: { "label": "data(label)", "text-wrap": "wrap", "font-size": 10,
      "text-valign": "center", "text-halign": "center", "color": "#1d2733" } },
    { selector: ".vpc", style: { "shape": "round-rectangle", "background-color": "#eef4fb",
      "border-color": "#3b6ea5", "border-width": 2, "text-valign": "top", "font-size": 12, "font-weight": "bold", "padding": 18 } },
    { selector: ".subnet", style: { "shape": "round-rectangle", "background-color": "#ffffff",
      "border-color": "#7fa7d1", "border-width": 1, "border-style": "dashed", "text-valign": "top", "padding": 14 } },
    { selector: ".eni", style: { "shape": "round-rectangle", "width": 150, "height": 48, "background-color": "#dfe7ef", "border-width": 1, "border-color": "#8899aa" } },
    { selector: ".eni.hyperplane", style: { "background-color": "#ffe9c7", "border-color": "#d08a1c", "border-width": 2,
      "width": "mapData(flows, 0, 200, 160, 220)" } },
    { selector: ".eni.resource", style: { "background-color": "#e3f4e1", "border-color": "#3f8f3a" } },
    { selector: ".igw", style: { "shape": "diamond", "width": 150, "height": 56, "background-color": "#d9f0f7", "border-color": "#1f7a99", "border-width": 2, "font-weight": "bold" } },
    { selector: ".nat", style: { "shape": "cut-rectangle", "width": 170, "height": 52, "background-color": "#fbe3ea", "border-color": "#b0395d", "border-width": 2 } },
    { selector: ".nat.pending, .nat.deleting, .nat.failed", style: { "border-style": "dashed" } },
    { selector: ".function", style: { "shape": "hexagon", "width": 120, "height": 40, "background-color": "#6c4fc1", "color": "#ffffff", "font-weight": "bold" } },
    { selector: ".sandbox", style: { "shape": "ellipse", "width": 96, "height": 30, "background-color": "#f3f3f3", "border-width": 1, "border-color": "#999999", "font-size": 8 } },
    { selector: "edge", style: { "curve-style": "bezier", "width": 2, "target-arrow-shape": "triangle", "line-color": "#6c4fc1", "target-arrow-color": "#6c4fc1" } },
    { selector: "edge.egress", style: { "line-color": "#1f7a99", "target-arrow-color": "#1f7a99" } },
    { selector: "edge.steered", style: { "line-style": "dashed", "width": 1, "line-color": "#999999", "target-arrow-color": "#999999" } },
  ];

  function layoutOptions(elements) {
    if (typeof cytoscapeFcose !== "undefined") {
      if (!lp.fcose) { cytoscape.use(cytoscapeFcose); lp.fcose = true; }
      // reads left to right: functions → their ENI; each ENI's sandboxes below it
      const placement = [];
      const firstEni = {};  // per subnet: its first Hyperplane ENI
      for (const el of elements)
        if (el.classes === "eni hyperplane" && !firstEni[el.data.parent]) firstEni[el.data.parent] = el.data.id;
      for (const el of elements) {
        if (el.classes === "eni resource" && firstEni[el.data.parent])
          placement.push({ left: firstEni[el.data.parent], right: el.data.id, gap: 40 });
        if (!el.data.source) continue;
        if (el.classes === "uses") placement.push({ left: el.data.source, right: el.data.target, gap: 90 });
        else placement.push({ top: el.data.target, bottom: el.data.source, gap: 50 });
      }
      // the first layout from scratch; later ones move what is there as little as they can
      return { name: "fcose", quality: "proof", randomize: !lp.laidOut, animate: false,
               nodeDimensionsIncludeLabels: true, packComponents: true, padding: 20,
               idealEdgeLength: () => 70, nodeRepulsion: () => 6000, nestingFactor: 0.3,
               gravity: 0.5, gravityCompound: 1.5, relativePlacementConstraint: placement };
    }
    return { name: "cose", animate: false, nodeDimensionsIncludeLabels: true, padding: 20 };
  }

  function renderMap(state) {
    const elements = mapElements(state);
    const key = elements.map((e) => e.data.id).sort().join("|");
    if (typeof cytoscape === "undefined") {
      $("#map").textContent = "The map's library is not installed on the server (run `make install`).";
      return;
    }
    if (!lp.cy) {
      lp.cy = cytoscape({ container: $("#map"), style: MAP_STYLE, wheelSensitivity: 0.3,
                          minZoom: 0.2, maxZoom: 3 });
    }
    const cy = lp.cy;
    if (key !== lp.graphKey) {
      lp.graphKey = key;
      cy.batch(() => { cy.elements().remove(); cy.add(elements); });
      cy.layout(layoutOptions(elements)).run();
      lp.laidOut = true;
      cy.fit(undefined, 20);
    } else {
      cy.batch(() => {
        for (const el of elements) {
          const existing = cy.getElementById(el.data.id);
          if (existing.nonempty()) { existing.data(el.data); if (el.classes) existing.classes(el.classes); }
        }
      });
    }
  }

  function renderEnis(state) {
    fill($("#enis tbody"), interfaces(state), ({ subnet, eni }) => {
      const tr = document.createElement("tr");
      tr.dataset.eni = eni.id;
      const kind = eniKind(eni);
      cell(tr, eni.id, "mono");
      cell(tr, subnet.id, "mono");
      cell(tr, eni.ip + (eni.elastic_ip ? " · EIP " + eni.elastic_ip : ""), "mono", "ip");
      cell(tr, kind === "hyperplane" ? "Hyperplane ENI" : kind === "resource" ? "lambdaplane run" : eni.type);
      cell(tr, kind === "hyperplane" ? eni.functions.join(", ") :
               kind === "resource" ? (eni.name ? eni.name + ": " : "") + program(eni.argv || "") : eni.description || "",
           "", "functions");
      cell(tr, kind === "hyperplane" ? String(eni.sandboxes.length) : "–", "n", "sandboxes");
      cell(tr, kind === "hyperplane" ? fmt(eni.flows) : "–", "n", "flows");
      cell(tr, fmt(eni.tx_packets), "n");
      cell(tr, fmt(eni.rx_packets), "n");
      cell(tr, fmt(eni.dropped_packets), "n");
      return tr;
    });
  }

  // -- live -------------------------------------------------------------------------------
  function render(state) {
    lp.state = state;
    $("#instance").textContent = state.instance + " · VPC mode " + state.vpc_mode;
    renderFunctions(state);
    renderEnvironments(state);
    renderEnis(state);
    renderMap(state);
  }

  function appendLog(lines) {
    const pre = $("#log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent += lines.join("\n") + "\n";
    const excess = pre.textContent.length - 200000;
    if (excess > 0) pre.textContent = pre.textContent.slice(excess);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function connect() {
    if (lp.source) lp.source.close();
    const url = EVENTS + (lp.selected ? "?function=" + encodeURIComponent(lp.selected) : "");
    const source = new EventSource(url);
    lp.source = source;
    source.addEventListener("open", () => { $("#live").textContent = "live"; $("#live").className = "live on"; });
    source.addEventListener("error", () => { $("#live").textContent = "reconnecting…"; $("#live").className = "live off"; });
    source.addEventListener("state", (ev) => render(JSON.parse(ev.data)));
    source.addEventListener("log", (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.function === lp.selected) appendLog(msg.lines);
    });
  }

  function select(key) {
    if (key === lp.selected) return;
    lp.selected = key;
    $("#log").textContent = "";
    $("#log-function").textContent = key;
    for (const tr of document.querySelectorAll("#functions tbody tr"))
      tr.classList.toggle("selected", tr.dataset.function === key);
    connect();
  }

  document.addEventListener("DOMContentLoaded", () => {
    // one listener on the body: rows are redrawn live, a click lands on whichever is there
    $("#functions tbody").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr[data-function]");
      if (tr) select(tr.dataset.function);
    });
    connect();
  });
})();
