/*
 * keygate console.  Plain JavaScript, no framework, nothing fetched from
 * elsewhere; every request goes to this admin listener with the session
 * cookie, and every change carries the session's CSRF token.  No inline
 * script or style (the Content-Security-Policy forbids them).
 */
"use strict";

(function () {
  const PAGE = 50;
  const S = { csrf: null, settings: null, scopes: [] };
  const $ = (sel, root) => (root || document).querySelector(sel);

  /* --- helpers -------------------------------------------------------- */

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k !== null && k !== undefined)
      e.append(typeof k === "string" ? document.createTextNode(k) : k);
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  function fromTemplate(id) {
    return document.getElementById(id).content.cloneNode(true);
  }

  function toast(msg) {
    const t = $("#toast");
    t.textContent = msg;
    t.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("show"), 2500);
  }

  function fmtTime(s) {
    if (!s) return "never";
    const d = new Date(s);
    return d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" }) +
      " " + d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function ago(s) {
    if (!s) return "never";
    const sec = Math.max(0, (Date.now() - Date.parse(s)) / 1000);
    if (sec < 90) return "just now";
    if (sec < 5400) return Math.round(sec / 60) + " min ago";
    if (sec < 129600) return Math.round(sec / 3600) + " h ago";
    return Math.round(sec / 86400) + " days ago";
  }

  function splitScopes(v) {
    return v.split(/[\s,]+/).filter((x) => x !== "");
  }

  /* An <input type=date> value as the end of that day, UTC; "" : null. */
  function dateToExpiry(v) {
    return v ? v + "T23:59:59Z" : null;
  }

  function expiryToDate(s) {
    return s ? s.slice(0, 10) : "";
  }

  function limitsFrom(form) {
    const n = (name) => {
      const v = form.elements[name].value.trim();
      return v === "" ? null : Number(v);
    };
    const r = { per_1s: n("r1"), per_10s: n("r10"), per_60s: n("r60") };
    return r.per_1s === null && r.per_10s === null && r.per_60s === null ? null : r;
  }

  /* --- the admin API ---------------------------------------------------- */

  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.message ? body.message : "HTTP " + status);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body, retried) {
    const h = { Accept: "application/json" };
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (method !== "GET" && S.csrf) h["X-CSRF-Token"] = S.csrf;
    const r = await fetch(path, {
      method, headers: h, credentials: "same-origin", cache: "no-store",
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    let j = null;
    if (r.status !== 204) {
      try { j = await r.json(); } catch (e) { j = null; }
    }
    if (r.status === 401 && path !== "/ui/api/login") {
      showLogin("Your session has ended; log in again.");
      throw new ApiError(401, j);
    }
    /* A login in another tab made a new session: take its token, once. */
    if (r.status === 403 && j && j.error === "csrf_failed" && !retried) {
      const s = await api("GET", "/ui/api/session");
      if (s.logged_in) {
        setSession(s);
        return api(method, path, body, true);
      }
    }
    if (!r.ok) throw new ApiError(r.status, j);
    return j;
  }

  function errorText(e) {
    if (e instanceof ApiError && e.body && e.body.message)
      return e.body.message + (e.body.field ? " (" + e.body.field + ")" : "");
    return String(e.message || e);
  }

  /* --- session ----------------------------------------------------------- */

  function setSession(j) {
    S.csrf = j.csrf_token;
    S.settings = j;
    S.scopes = j.scopes || [];
    $("#version").textContent = "keygate " + j.version;
    $("#nav").hidden = false;
    $("#logout").hidden = false;
    $("#login").hidden = true;
  }

  function showLogin(msg) {
    S.csrf = null;
    for (const d of document.querySelectorAll("dialog")) d.close();
    $("#nav").hidden = true;
    $("#logout").hidden = true;
    $("#view").hidden = true;
    $("#view").replaceChildren();
    $("#login").hidden = false;
    $("#login-error").textContent = msg || "";
    $("#login-token").focus();
  }

  async function login(ev) {
    ev.preventDefault();
    const input = $("#login-token");
    try {
      const j = await api("POST", "/ui/api/login", { token: input.value });
      input.value = "";
      setSession(j);
      route();
    } catch (e) {
      input.value = "";
      $("#login-error").textContent = e.status === 429 ?
        "Too many wrong tokens: wait a little." : errorText(e);
    }
  }

  async function logout() {
    try { await api("POST", "/ui/api/logout"); } catch (e) { /* ended */ }
    showLogin("Logged out.");
  }

  /* --- routing ----------------------------------------------------------- */

  /*
   * Each navigation draws into a container of its own: a page still
   * loading when the next one opens draws into one no longer shown.
   */
  function route() {
    if (!S.csrf) return;
    const h = location.hash || "#/keys";
    const outer = $("#view");
    const view = el("div");
    outer.hidden = false;
    outer.replaceChildren(view);
    let m, name;
    if ((m = h.match(/^#\/keys\/([^/]+)$/))) {
      name = "keys";
      keyPage(view, decodeURIComponent(m[1]));
    } else if (h === "#/gateway") {
      name = "gateway";
      gatewayPage(view);
    } else if (h === "#/explorer") {
      name = "explorer";
      explorerPage(view);
    } else {
      name = "keys";
      keysPage(view);
    }
    for (const a of document.querySelectorAll("#nav a"))
      if (a.dataset.nav === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    document.title = { keys: "Keys", gateway: "Gateway", explorer: "API Explorer" }[name] +
      " · keygate console";
    if (route.seen) $("#main").focus();	/* not on the first page */
    route.seen = true;
  }

  /* --- keys ----------------------------------------------------------- */

  function keyBadges(k) {
    const out = [], now = Date.now(), day = 86400000;
    const st = S.settings || { rotate_days: 90, unused_days: 30 };
    if (k.disabled) out.push(["disabled", "disabled"]);
    else if (k.expires_at && Date.parse(k.expires_at) <= now) out.push(["expired", "expired"]);
    else if (k.expires_at && Date.parse(k.expires_at) <= now + 7 * day) out.push(["expiring", "expires soon"]);
    else out.push(["active", "active"]);
    if (Date.parse(k.created_at) <= now - st.rotate_days * day)
      out.push(["old", "rotate: over " + st.rotate_days + " days old"]);
    const used = k.last_used_at ? Date.parse(k.last_used_at) : Date.parse(k.created_at);
    if (used <= now - st.unused_days * day)
      out.push(["unused", "unused " + st.unused_days + "+ days"]);
    return out.map(([c, t]) => el("span", { class: "badge " + c, text: t }));
  }

  function keysPage(view) {
    view.append(fromTemplate("t-keys"));
    const form = $("[data-role=filters]", view);
    const rows = $("[data-role=rows]", view);
    const count = $("[data-role=count]", view);
    const prev = $("[data-act=prev]", view), next = $("[data-act=next]", view);
    const st = new URLSearchParams(sessionStorage.getItem("keys-filters") || "");
    for (const n of ["q", "state", "hygiene", "sort"])
      if (st.get(n) !== null) form.elements[n].value = st.get(n);
    let offset = Number(st.get("offset") || 0), seq = 0, timer = null;

    async function load() {
      const my = ++seq;
      const p = new URLSearchParams();
      const f = form.elements;
      p.set("sort", f.sort.value);
      p.set("limit", String(PAGE));
      p.set("offset", String(offset));
      if (f.q.value.trim()) p.set("q", f.q.value.trim());
      if (f.state.value) p.set("state", f.state.value);
      if (f.hygiene.value === "old") p.set("older_than", S.settings.rotate_days + "d");
      if (f.hygiene.value === "unused") p.set("unused", S.settings.unused_days + "d");
      const saved = new URLSearchParams(p);
      saved.set("hygiene", f.hygiene.value);
      sessionStorage.setItem("keys-filters", saved.toString());
      let j;
      try {
        j = await api("GET", "/v1/keys?" + p.toString());
      } catch (e) {
        if (my === seq && e.status !== 401)
          rows.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "empty error", text: errorText(e) })));
        return;
      }
      if (my !== seq) return;
      if (j.keys.length === 0 && offset > 0 && j.total > 0) {
        offset = Math.max(0, j.total - PAGE);
        load();
        return;
      }
      rows.replaceChildren(...j.keys.map((k) => el("tr", {},
        el("td", {}, el("a", { href: "#/keys/" + encodeURIComponent(k.id), text: k.name || k.id })),
        el("td", {}, el("code", { text: k.hint })),
        el("td", { text: k.owner }),
        el("td", { text: k.app_id || "" }),
        el("td", { text: k.scopes.join(" ") }),
        el("td", {}, ...keyBadges(k)),
        el("td", { title: k.created_at, text: fmtTime(k.created_at) }),
        el("td", { title: k.last_used_at || "", text: ago(k.last_used_at) }))));
      if (j.keys.length === 0)
        rows.append(el("tr", {}, el("td", { colspan: 8, class: "empty", text: "No key matches." })));
      count.textContent = j.total === 0 ? "0 keys" :
        (offset + 1) + "–" + (offset + j.keys.length) + " of " + j.total + " keys";
      prev.disabled = offset === 0;
      next.disabled = offset + j.keys.length >= j.total;
    }

    form.addEventListener("input", (ev) => {
      offset = 0;
      clearTimeout(timer);
      timer = setTimeout(load, ev.target.name === "q" ? 250 : 0);
    });
    form.addEventListener("submit", (ev) => ev.preventDefault());
    prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
    next.addEventListener("click", () => { offset += PAGE; load(); });
    $("[data-act=create]", view).addEventListener("click", () => createDialog(load));
    load();
  }

  /*
   * A checkbox per scope the routes require, under the scopes field: each
   * adds or removes its word; the field takes any others typed.
   */
  function scopePicker(box, input) {
    if (S.scopes.length === 0) return;
    box.hidden = false;
    const boxes = S.scopes.map((sc, i) => {
      const id = input.id + "-pick-" + i;
      const cb = el("input", { type: "checkbox", id, value: sc });
      cb.addEventListener("change", () => {
        const words = splitScopes(input.value).filter((w) => w !== sc);
        if (cb.checked) words.push(sc);
        input.value = words.join(" ");
      });
      box.append(el("span", { class: "pick" }, cb, el("label", { for: id, text: sc })));
      return cb;
    });
    const sync = () => {
      const words = splitScopes(input.value);
      for (const cb of boxes) cb.checked = words.includes(cb.value);
    };
    input.addEventListener("input", sync);
    sync();
    return sync;
  }

  function openDialog(tpl) {
    const frag = fromTemplate(tpl);
    const dlg = frag.querySelector("dialog");
    document.body.append(dlg);
    dlg.addEventListener("close", () => dlg.remove());
    dlg.showModal();
    return dlg;
  }

  function createDialog(done) {
    const dlg = openDialog("t-create");
    const form = $("[data-role=form]", dlg);
    scopePicker($("[data-role=picks]", dlg), $("#c-scopes", dlg));
    $("[data-act=cancel]", dlg).addEventListener("click", () => dlg.close());
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = form.elements;
      const body = { owner: f.owner.value.trim(), prefix: f.prefix.value };
      if (f.name.value.trim()) body.name = f.name.value.trim();
      if (f.app_id.value.trim()) body.app_id = f.app_id.value.trim();
      const sc = splitScopes(f.scopes.value);
      if (sc.length) body.scopes = sc;
      if (f.expires.value) body.expires_at = dateToExpiry(f.expires.value);
      const rl = limitsFrom(form);
      if (rl) body.rate_limit = rl;
      try {
        const k = await api("POST", "/v1/keys", body);
        dlg.close();
        secretDialog(k, null);
        done();
      } catch (e) {
        $("[data-role=error]", dlg).textContent = errorText(e);
      }
    });
  }

  /* The secret, once: gone from the page when the dialog closes. */
  function secretDialog(k, graceUntil) {
    const dlg = openDialog("t-secret");
    const input = $("[data-role=secret]", dlg);
    input.value = k.secret;
    k.secret = null;
    $("[data-role=id]", dlg).textContent = k.id;
    if (graceUntil)
      $("[data-role=grace]", dlg).textContent = "The previous secret works until " + fmtTime(graceUntil) + ".";
    $("[data-act=copy]", dlg).addEventListener("click", async () => {
      let ok = true;
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (e) {
        input.select();
        ok = document.execCommand("copy");
      }
      toast(ok ? "Secret copied" : "Could not copy: select it and copy it by hand");
    });
    /* Escape must not lose it before it was stored: only the button. */
    dlg.addEventListener("cancel", (ev) => ev.preventDefault());
    $("[data-act=done]", dlg).addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => { input.value = ""; });
    input.focus();
    input.select();
  }

  async function keyPage(view, id) {
    let k;
    try {
      k = await api("GET", "/v1/keys/" + encodeURIComponent(id));
    } catch (e) {
      if (e.status !== 401)
        view.append(el("p", {}, el("a", { href: "#/keys", text: "← All keys" })),
          el("p", { class: "error", role: "alert", text: errorText(e) }));
      return;
    }
    view.append(fromTemplate("t-key"));
    const render = () => {
      $("[data-role=title]", view).textContent = k.name || k.id;
      $("[data-role=badges]", view).replaceChildren(...keyBadges(k));
      $("[data-act=toggle]", view).textContent = k.disabled ? "Enable" : "Disable";
      const rl = k.rate_limit || {};
      const facts = [["Id", k.id], ["Owner", k.owner], ["App", k.app_id || "—"],
        ["Hint", k.hint], ["Scopes", k.scopes.join(" ") || "—"],
        ["Rate limit", k.rate_limit ? ["per_1s", "per_10s", "per_60s"].map((w) =>
          (rl[w] === null ? "default" : rl[w]) + " " + w.slice(4)).join(", ") : "the default"],
        ["Created", fmtTime(k.created_at)], ["Updated", fmtTime(k.updated_at)],
        ["Expires", k.expires_at ? fmtTime(k.expires_at) : "never"],
        ["Last used", k.last_used_at ? fmtTime(k.last_used_at) : "never"]];
      if (k.grace_until) facts.push(["Old secret works until", fmtTime(k.grace_until)]);
      $("[data-role=facts]", view).replaceChildren(...facts.flatMap(([t, d]) =>
        [el("dt", { text: t }), el("dd", { text: String(d) })]));
      const f = $("[data-role=edit]", view).elements;
      f.name.value = k.name || "";
      f.expires.value = expiryToDate(k.expires_at);
      f.scopes.value = k.scopes.join(" ");
      f.r1.value = rl.per_1s || "";
      f.r10.value = rl.per_10s || "";
      f.r60.value = rl.per_60s || "";
    };
    render();
    const syncPicks = scopePicker($("[data-role=picks]", view), $("#e-scopes", view));
    const path = "/v1/keys/" + encodeURIComponent(k.id);
    $("[data-role=edit]", view).addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const form = ev.target, f = form.elements;
      const body = { name: f.name.value.trim() || null, scopes: splitScopes(f.scopes.value),
        expires_at: dateToExpiry(f.expires.value), rate_limit: limitsFrom(form) };
      try {
        k = await api("PATCH", path, body);
        $("[data-role=error]", view).textContent = "";
        render();
        if (syncPicks) syncPicks();
        toast("Saved");
      } catch (e) {
        $("[data-role=error]", view).textContent = errorText(e);
      }
    });
    $("[data-act=toggle]", view).addEventListener("click", async () => {
      try {
        k = await api("PATCH", path, { disabled: !k.disabled });
        render();
        toast(k.disabled ? "Disabled" : "Enabled");
      } catch (e) { toast(errorText(e)); }
    });
    $("[data-act=regenerate]", view).addEventListener("click", () => {
      const dlg = openDialog("t-regen");
      $("[data-act=cancel]", dlg).addEventListener("click", () => dlg.close());
      $("[data-role=form]", dlg).addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          const g = Number($("[data-role=grace]", dlg).value);
          const n = await api("POST", path + "/regenerate", g > 0 ? { grace_seconds: g } : {});
          dlg.close();
          const secret = { id: n.id, secret: n.secret };
          n.secret = null;
          k = n;
          render();
          secretDialog(secret, k.grace_until);
        } catch (e) { dlg.close(); toast(errorText(e)); }
      });
    });
    $("[data-act=delete]", view).addEventListener("click", () => {
      const dlg = openDialog("t-confirm");
      $("[data-role=id]", dlg).textContent = k.id;
      const typed = $("[data-role=typed]", dlg), del = $("[data-act=delete]", dlg);
      typed.addEventListener("input", () => { del.disabled = typed.value.trim() !== k.id; });
      $("[data-act=cancel]", dlg).addEventListener("click", () => dlg.close());
      $("[data-role=form]", dlg).addEventListener("submit", async (ev) => {
        ev.preventDefault();
        if (typed.value.trim() !== k.id) return;
        try {
          await api("DELETE", path);
          dlg.close();
          toast("Deleted " + k.id);
          location.hash = "#/keys";
        } catch (e) { dlg.close(); toast(errorText(e)); }
      });
      typed.focus();
    });
    usageCharts(view, path);
  }

  /* --- usage charts (SVG) -------------------------------------------- */

  async function usageCharts(view, path) {
    try {
      const [hour, month] = await Promise.all([
        api("GET", path + "/usage?history=1h"),
        api("GET", path + "/usage?history=30d")]);
      barChart($("[data-role=hour]", view), hour.points, (t) =>
        new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }), "minute");
      barChart($("[data-role=month]", view), perDay(month.points), (t) =>
        new Date(t).toLocaleDateString(undefined, { month: "short", day: "numeric" }), "day");
    } catch (e) {
      if (e.status !== 401)
        $("[data-role=hour]", view).append(el("p", { class: "muted", text: errorText(e) }));
    }
  }

  function perDay(points) {
    const days = new Map();
    for (const p of points) {
      const d = p.t.slice(0, 10);
      const a = days.get(d) || { t: d + "T00:00:00Z", admitted: 0, rate_limited: 0, refused: 0 };
      a.admitted += p.admitted;
      a.rate_limited += p.rate_limited;
      a.refused += p.refused;
      days.set(d, a);
    }
    return [...days.values()].slice(-30);
  }

  function barChart(box, points, label, unit) {
    const W = 720, H = 140, L = 36, B = 18, n = Math.max(points.length, 1);
    const max = Math.max(1, ...points.map((p) => p.admitted + p.rate_limited + p.refused));
    const s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": points.reduce((a, p) => a + p.admitted, 0) + " admitted, " +
        points.reduce((a, p) => a + p.rate_limited, 0) + " rate limited, " +
        points.reduce((a, p) => a + p.refused, 0) + " refused, per " + unit });
    const bw = (W - L) / n, y = (v) => (H - B) * (1 - v / max);
    for (const f of [0, 0.5, 1]) {
      s.append(svg("line", { class: "grid", x1: L, x2: W, y1: y(max * f), y2: y(max * f) }));
      const t = svg("text", { class: "axis", x: L - 4, y: y(max * f) + 3, "text-anchor": "end" });
      t.textContent = String(Math.round(max * f));
      s.append(t);
    }
    points.forEach((p, i) => {
      let base = 0;
      for (const [k, c] of [["admitted", "ok"], ["rate_limited", "limited"], ["refused", "refused"]]) {
        if (p[k] > 0) {
          const r = svg("rect", { class: c, x: L + i * bw + 0.5, width: Math.max(bw - 1, 0.5),
            y: y(base + p[k]), height: y(base) - y(base + p[k]) });
          const tt = svg("title", {});
          tt.textContent = label(p.t) + ": " + p[k] + " " + k.replace("_", " ");
          r.append(tt);
          s.append(r);
        }
        base += p[k];
      }
    });
    for (const i of [0, Math.floor(n / 2), n - 1]) {
      if (!points[i]) continue;
      const t = svg("text", { class: "axis", x: L + i * bw + bw / 2, y: H - 4, "text-anchor": "middle" });
      t.textContent = label(points[i].t);
      s.append(t);
    }
    box.replaceChildren(s);
  }

  /* --- gateway ---------------------------------------------------------- */

  function table(heads, rows) {
    return el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) =>
        el("td", {}, typeof c === "string" || typeof c === "number" ? String(c) : c)))))));
  }

  function badge(cls, text) {
    return el("span", { class: "badge " + cls, text });
  }

  function card(title, ...body) {
    return el("section", { class: "card" }, el("h2", { text: title }), ...body);
  }

  /* Horizontal bars of named counts, as SVG. */
  function hbars(pairs) {
    const max = Math.max(1, ...pairs.map(([, v]) => v)), H = 22, W = 720, L = 180;
    const s = svg("svg", { viewBox: "0 0 " + W + " " + pairs.length * H, role: "img",
      "aria-label": pairs.map(([k, v]) => k + " " + v).join(", ") });
    pairs.forEach(([k, v], i) => {
      const t = svg("text", { class: "axis", x: L - 6, y: i * H + 15, "text-anchor": "end" });
      t.textContent = k;
      const r = svg("rect", { class: k === "rate limited (429)" ? "limited" : "refused",
        x: L, y: i * H + 4, height: H - 8, width: Math.max((W - L - 60) * v / max, v > 0 ? 2 : 0) });
      const n = svg("text", { class: "axis", x: L + (W - L - 60) * v / max + 6, y: i * H + 15 });
      n.textContent = String(v);
      s.append(t, r, n);
    });
    return el("div", { class: "chart" }, s);
  }

  async function gatewayPage(view) {
    view.append(fromTemplate("t-gateway"));
    const body = $("[data-role=body]", view);
    /* Each card on its own: Redis away must not blank the page. */
    const got = await Promise.allSettled([api("GET", "/v1/status"), api("GET", "/v1/cluster"),
      api("GET", "/v1/gateway")]);
    if (got.some((g) => g.status === "rejected" && g.reason.status === 401)) return;
    const [st, cl, gw] = got.map((g) => (g.status === "fulfilled" ? g.value : null));
    const failed = (i, title) => card(title, el("p", { class: "error", text: errorText(got[i].reason) }));
    if (!st || !gw) {
      body.append(failed(st ? 2 : 0, "Gateway"));
      return;
    }
    const lm = st.last_minute, lh = st.last_hour;
    body.append(card("This node",
      ...[["Version", st.version], ["Up since", fmtTime(st.started_at)],
        ["Workers", st.workers.running + " of " + st.workers.configured],
        ["Keys", st.keys.count + " of " + st.keys.max],
        ["Requests per second", lm.requests_per_second.toFixed(1)],
        ["Connections open", st.connections.reading + st.connections.writing + st.connections.idle]].map(([t, v]) =>
        el("span", { class: "stat" }, el("b", { text: String(v) }), t))));
    const minutes = Math.round(lh.seconds / 60);
    const pairs = Object.entries(lh.refused).map(([k, v]) => [k, v]);
    pairs.push(["rate limited (429)", lh.rate_limited]);
    body.append(card("Refusals, last " + (lh.seconds ? (minutes >= 60 ? "hour" : minutes + " min") : "hour"),
      lh.seconds ? hbars(pairs) : el("p", { class: "muted", text: "Counted from the first whole minute after start-up." })));
    body.append(card("Routes", el("p", { class: "muted", text: "Tried in this order; the first match decides." }),
      table(["Name", "Methods", "Pattern", "Auth", "Scopes", "Rate limit", "Upstream"],
        gw.routes.map((r) => [r.name, r.methods.join(" "), el("code", { text: r.pattern }), r.auth.join(", "),
          r.scopes.join(" ") || "—",
          r.rate_limit === "off" ? "off" : ["per_1s", "per_10s", "per_60s"].filter((w) => r.rate_limit[w] !== null)
            .map((w) => r.rate_limit[w] + "/" + w.slice(4)).join(" ") || "default",
          r.upstream || "—"]))));
    const states = new Map((st.upstreams || []).map((u) => [u.name + " " + u.server, u]));
    body.append(card("Upstreams",
      table(["Upstream", "Server", "Weight", "Health check", "Last minute", "Requests", "Failures"],
        gw.upstreams.flatMap((u) => (u.type === "echo" ? [[u.name, "built-in echo", "—", "—", "—", "—", "—"]] :
          u.servers.map((v) => {
            const s2 = states.get(u.name + " " + v.server);
            return [u.name, v.server, v.weight,
              badge(v.health === "up" ? "active" : v.health === "down" ? "disabled" : "", v.health),
              s2 ? s2.state : "—", s2 ? s2.requests : 0, s2 ? s2.failures : 0];
          }))))));
    body.append(card("JWT providers", gw.jwt_providers.length === 0 ?
      el("p", { class: "muted", text: "None configured." }) :
      table(["Provider", "Issuers", "Key set", "Keys", "State", "Fetched"],
        gw.jwt_providers.map((p) => [p.name, p.issuers.join(" "), p.jwks, p.keys,
          badge(p.up ? "active" : "disabled", p.up ? "up" : "down"),
          p.updated_at ? ago(p.updated_at) : "never"]))));
    const nodes = cl && cl.enabled ? cl.nodes || [] : [];
    if (!cl) {
      body.append(failed(1, "Cluster"));
      return;
    }
    body.append(card("Cluster", !cl.enabled ? el("p", { class: "muted", text: "Not in a cluster." }) :
      table(["Node", "Host", "Version", "Last seen", "Lag (s)"], nodes.map((n) => [
        n.node + (n.self ? " (this one)" : ""), n.host || "", n.version || "",
        n.seen ? ago(new Date(n.seen).toISOString()) : "", n.lag_seconds === null ? "—" : n.lag_seconds]))));
  }

  /* --- API explorer ---------------------------------------------------- */

  function resolveRef(doc, o) {
    let seen = 0;
    while (o && o.$ref && seen++ < 20)
      o = o.$ref.slice(2).split("/").reduce((a, k) => (a ? a[k] : undefined), doc);
    return o || {};
  }

  /* A schema as compact JSON, its $refs expanded a few levels deep. */
  function expand(doc, s, depth) {
    if (Array.isArray(s)) return s.map((x) => expand(doc, x, depth));
    if (!s || typeof s !== "object") return s;
    if (s.$ref) {
      if (depth > 3) return { $ref: s.$ref };
      return expand(doc, resolveRef(doc, s), depth + 1);
    }
    const out = {};
    for (const [k, v] of Object.entries(s)) out[k] = expand(doc, v, depth);
    return out;
  }

  async function explorerPage(view) {
    view.append(fromTemplate("t-explorer"));
    const box = $("[data-role=ops]", view);
    let doc;
    try {
      doc = await api("GET", "/v1/openapi.json");
    } catch (e) {
      if (e.status !== 401) box.append(el("p", { class: "error", text: errorText(e) }));
      return;
    }
    $("[data-role=info]", view).textContent = doc.info.title + " " + doc.info.version;
    const groups = new Map();
    for (const [path, item] of Object.entries(doc.paths)) {
      const g = path.startsWith("/ui/") ? "Console session" : path.startsWith("/v1/keys") ? "Keys" :
        path === "/metrics" ? "Metrics" : "Gateway";
      for (const [method, op] of Object.entries(item)) {
        if (method === "parameters") continue;
        if (!groups.has(g)) groups.set(g, []);
        groups.get(g).push({ path, method, op, common: item.parameters || [] });
      }
    }
    for (const [g, ops] of groups) {
      box.append(el("h2", { class: "group", text: g }), ...ops.map((o) => operation(doc, o)));
    }
  }

  function operation(doc, o) {
    const id = "op-" + o.op.operationId;
    const params = [...o.common, ...(o.op.parameters || [])].map((p) => resolveRef(doc, p));
    const det = el("details", { class: "op", id });
    det.append(el("summary", {}, el("span", { class: "method " + o.method, text: o.method.toUpperCase() }),
      el("code", { text: o.path }), el("span", { class: "muted", text: o.op.summary || "" })));
    const body = el("div", { class: "body" });
    if (o.op.description) body.append(el("p", { text: o.op.description }));
    const form = el("form", { "data-op": o.op.operationId });
    if (params.length) {
      const tb = el("tbody");
      for (const p of params) {
        const iid = id + "-" + p.in + "-" + p.name;
        tb.append(el("tr", {}, el("td", {}, el("label", { for: iid }, el("code", { text: p.name })),
          el("span", { class: "muted", text: p.in + (p.required ? ", required" : "") })),
          el("td", { text: (p.schema && (p.schema.enum ? p.schema.enum.join(" | ") : p.schema.type)) || "" }),
          el("td", {}, el("input", { id: iid, name: p.in + ":" + p.name, required: p.required || null,
            placeholder: p.schema && p.schema.default !== undefined ? String(p.schema.default) : "" }),
            p.description ? el("span", { class: "muted", text: p.description }) : null)));
      }
      form.append(el("table", { class: "params" }, tb));
    }
    const rb = o.op.requestBody && o.op.requestBody.content && o.op.requestBody.content["application/json"];
    if (rb) {
      body.append(el("h3", { text: "Request body" }),
        el("pre", { text: JSON.stringify(expand(doc, rb.schema, 0), null, 2) }));
      form.append(el("label", { for: id + "-body", text: "Body (JSON)" }),
        el("textarea", { id: id + "-body", name: "body", spellcheck: "false" }));
    }
    body.append(el("h3", { text: "Responses" }));
    for (const [code, r0] of Object.entries(o.op.responses || {})) {
      const r = resolveRef(doc, r0);
      const sch = r.content && r.content["application/json"] && r.content["application/json"].schema;
      const d = el("details", {}, el("summary", {}, el("code", { text: code }), " " + (r.description || "")));
      if (sch) d.append(el("pre", { text: JSON.stringify(expand(doc, sch, 0), null, 2) }));
      body.append(d);
    }
    const out = el("div", { "data-role": "result", "aria-live": "polite" });
    form.append(el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Try it" })));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); tryIt(o, form, out); });
    body.append(el("h3", { text: params.length || rb ? "Try it: parameters" : "Try it" }), form, out);
    det.append(body);
    return det;
  }

  async function tryIt(o, form, out) {
    let path = o.path;
    const q = new URLSearchParams(), f = new FormData(form);
    for (const [k, v] of f.entries()) {
      if (k === "body" || v === "") continue;
      const [where, name] = k.split(/:(.*)/s);
      if (where === "path") path = path.replace("{" + name + "}", encodeURIComponent(v));
      else if (where === "query") q.set(name, v);
    }
    if (/\{[^}]+\}/.test(path)) {
      out.replaceChildren(el("p", { class: "error", text: "Fill in the path parameters." }));
      return;
    }
    const url = path + (q.toString() ? "?" + q.toString() : "");
    const h = { Accept: "application/json" };
    const text = f.get("body");
    if (text) h["Content-Type"] = "application/json";
    if (o.method !== "get" && S.csrf) h["X-CSRF-Token"] = S.csrf;
    const t0 = performance.now();
    let r, body;
    try {
      r = await fetch(url, { method: o.method.toUpperCase(), headers: h, credentials: "same-origin",
        cache: "no-store", body: text || undefined });
      body = await r.text();
    } catch (e) {
      out.replaceChildren(el("p", { class: "error", text: String(e) }));
      return;
    }
    /* A new secret is shown once, in its dialog, never left in a page. */
    let shown = body, fresh = null;
    try {
      const j = JSON.parse(body);
      if (j && typeof j === "object" && typeof j.secret === "string") {
        fresh = { id: j.id, secret: j.secret };
        j.secret = "(shown once, in its own dialog)";
      }
      shown = JSON.stringify(j, null, 2);
    } catch (e) { /* as is */ }
    body = null;
    const hdrs = [...r.headers.entries()].map(([k, v]) => k + ": " + v).join("\n");
    out.replaceChildren(
      el("p", {}, el("strong", { text: r.status + " " + r.statusText }),
        el("span", { class: "muted", text: "  " + o.method.toUpperCase() + " " + url + " · " +
          Math.round(performance.now() - t0) + " ms" })),
      el("h3", { text: "Headers" }), el("pre", { "data-role": "headers", text: hdrs }),
      el("h3", { text: "Body" }), el("pre", { "data-role": "body", text: shown }));
    if (fresh) secretDialog(fresh, null);
    if (r.status === 401) showLogin("Your session has ended; log in again.");
  }

  /* --- start ----------------------------------------------------------- */

  async function start() {
    $("#login-form").addEventListener("submit", login);
    $("#logout").addEventListener("click", logout);
    window.addEventListener("hashchange", route);
    try {
      const j = await api("GET", "/ui/api/session");
      if (j.logged_in) {
        setSession(j);
        route();
        return;
      }
    } catch (e) { /* shown below */ }
    showLogin();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
