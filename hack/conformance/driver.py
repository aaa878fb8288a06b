#!/usr/bin/env python3
"""Drive the OpenID Foundation conformance suite's FAPI 2.0 client-credentials client test plan
against the operator (stdlib only; started by run.sh after start.sh).

For each variant (client_auth_type private_key_jwt | mtls, sender_constrain mtls):
  1. Bootstrap: the operator resolves an AuthorizationServer (discovery) before it makes any key
     or certificate, and the suite needs the client's JWKS and certificate in the plan's
     configuration before a module runs. So a first plan with a throwaway client configuration
     starts one module under the variant's alias; the AuthorizationServer (the suite's issuer,
     our CA) turns Ready against it, the Static TppClient (no tokens yet) gets its signing key,
     JWKS ConfigMap and transport certificate; the bootstrap module is then stopped. It is
     never counted.
  2. The plan proper is created with the operator's published JWKS (`<name>-jwks`, jwks.json)
     and its transport certificate (`<name>-credentials`, tls.crt) as the static client.
  3. Each module: created and left WAITING; the operator is asked for a token (the first time by
     adding the `accounts` token to the spec, then with the `tpp.dev/renew-tokens` annotation);
     when a new `accounts.access_token` appears in the Secret, the consumer (this script, reading
     the Secret's files as a workload would) calls the suite's resource endpoint over mTLS with
     tls.crt/tls.key and the token; the module's result and its warnings/failures are read from
     the suite's API.
Results go to RESULTS (JSON) and are printed as a Markdown table. Nothing is retried or
rewritten: a module that does not finish is reported with the state it reached.
"""
import base64, http.client, json, os, ssl, subprocess, sys, tempfile, time, urllib.parse

PLAN = "fapi2-message-signing-final-client-credentials-grant-client-test-plan"
# Set by main() from the run directory start.sh wrote (RUN/env).
ENV, RUN, RESULTS, NS, CA = {}, ".", "results.json", "", ""
VARIANTS = (os.environ.get("CONFORMANCE_VARIANTS") or "private_key_jwt,mtls").split(",")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def kubectl(*args, input=None, check=True):
    p = subprocess.run([ENV["KUBECTL"], "--kubeconfig", ENV["KUBECONFIG"], "-n", NS, *args],
                       input=input, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def kget(kind, name):
    out = kubectl("get", kind, name, "-o", "json", check=False)
    return json.loads(out) if out.strip() else None


def apply(obj):
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=conformance", "-f", "-",
            input=json.dumps(obj))


def wait(what, fn, timeout):
    """Poll fn() until it returns a truthy value; bounded by timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(1)


# --- the suite's API (devmode: no login) -------------------------------------------------------
def api(method, path, params=None, body=None):
    u = urllib.parse.urlparse(ENV["SUITE_API"])
    ctx = ssl.create_default_context(cafile=CA)
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
    q = ("?" + urllib.parse.urlencode(params)) if params else ""
    data = json.dumps(body) if body is not None else None
    c.request(method, u.path + path + q, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}{q}: HTTP {r.status} {text[:500]}")
    return json.loads(text) if text.strip() else None


def runner_params(module, plan):
    """A module of a plan: no body (the plan holds the configuration), its variant if any."""
    p = {"test": module["testModule"], "plan": plan["id"]}
    if module.get("variant"):
        p["variant"] = json.dumps(module["variant"])
    return p


def module_info(mid):
    return api("GET", f"info/{mid}")


def until_waiting(mid):
    """A created module waits for the client (WAITING); one left CONFIGURED is started first."""
    st = wait_state(mid, {"CONFIGURED", "WAITING", "FINISHED", "INTERRUPTED"}, 120)["status"]
    if st == "CONFIGURED":
        api("POST", f"runner/{mid}")
        st = wait_state(mid, {"WAITING", "FINISHED", "INTERRUPTED"}, 120)["status"]
    if st != "WAITING":
        raise RuntimeError(f"module {mid} is {st} before the client ran")


def wait_state(mid, states, timeout):
    return wait(f"module {mid} in {states}",
                lambda: (lambda i: i if i.get("status") in states else None)(module_info(mid)), timeout)


# --- key material ------------------------------------------------------------------------------
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def rsa_jwk(kid, private):
    """A fresh RSA 2048 key as a JWK (openssl makes it; its -text output gives the numbers)."""
    d = tempfile.mkdtemp(dir=RUN)
    subprocess.run(["openssl", "genrsa", "-out", f"{d}/k", "2048"], check=True, capture_output=True)
    text = subprocess.run(["openssl", "rsa", "-in", f"{d}/k", "-noout", "-text"], check=True,
                          capture_output=True, text=True).stdout
    os.remove(f"{d}/k")
    fields, cur = {}, None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            cur = line.strip()[:-1]
            fields[cur] = ""
        elif cur and line.startswith(" "):
            fields[cur] += line.strip().replace(":", "")
        else:
            cur = None
    num = lambda k: b64u(int(fields[k], 16).to_bytes((len(fields[k]) + 1) // 2, "big").lstrip(b"\0"))
    jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "PS256", "e": "AQAB", "n": num("modulus")}
    if private:
        jwk.update(d=num("privateExponent"), p=num("prime1"), q=num("prime2"), dp=num("exponent1"),
                   dq=num("exponent2"), qi=num("coefficient"))
    return jwk


def throwaway_client():
    """A public RSA JWKS and a certificate nobody uses: the bootstrap plan's client."""
    d = tempfile.mkdtemp(dir=RUN)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=bootstrap",
                    "-keyout", f"{d}/k", "-out", f"{d}/c", "-days", "1"], check=True, capture_output=True)
    return {"keys": [rsa_jwk("bootstrap", False)]}, open(f"{d}/c").read()


def secret_files(name):
    s = kget("secret", name)
    return {k: base64.b64decode(v) for k, v in ((s or {}).get("data") or {}).items()}


# --- the consumer: a workload reading the credentials Secret ------------------------------------
def call_resource(url, files):
    d = tempfile.mkdtemp(dir=RUN)
    os.chmod(d, 0o700)
    for k in ("tls.crt", "tls.key"):
        with open(os.path.join(d, k), "wb") as f:
            f.write(files[k])
    ctx = ssl.create_default_context(cafile=CA)
    ctx.load_cert_chain(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"))
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
    c.request("GET", u.path, headers={"Authorization": "Bearer " + files["accounts.access_token"].decode(),
                                      "Accept": "application/json"})
    r = c.getresponse()
    body = r.read()
    for k in ("tls.crt", "tls.key"):
        os.remove(os.path.join(d, k))
    os.rmdir(d)
    return r.status, body


# --- objects -----------------------------------------------------------------------------------
def server_obj(name, issuer, discovery_url, profile):
    """The suite as AS: its issuer and the discovery URL it exposes (RFC 8414's
    /.well-known/oauth-authorization-server/<path> for a plain OAuth client)."""
    spec = {"issuer": issuer, "caBundle": open(CA).read(), "jwksCacheTtl": "5s",
            "clientAssertion": {"audience": "Issuer", "lifetime": "5m"}, "profile": profile}
    if discovery_url:
        spec["discoveryUrl"] = discovery_url
    return {"apiVersion": "tpp.dev/v1alpha1", "kind": "AuthorizationServer",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def client_obj(name, server, variant, tokens):
    spec = {"authorizationServerRef": {"name": server},
            "registration": {"mode": "Static", "clientId": f"conformance-{variant}"},
            "signingKey": {"algorithm": "PS256", "size": 2048,
                           "rotation": {"every": "90d", "propagationDelay": "5s", "retireAfter": "5s"}},
            "tokens": tokens}
    if variant == "mtls":
        spec["authentication"] = {"method": "tls_client_auth",
                                  "subjectDn": "CN=conformance-mtls,O=tpp-operator conformance,C=GB"}
        spec["transportCertificate"] = {"source": "SecretRef", "secretRef": {"name": "mtls-transport"}}
    else:
        spec["authentication"] = {"method": "private_key_jwt"}
        spec["transportCertificate"] = {"subject": "CN=conformance-pkj,O=tpp-operator conformance,C=GB",
                                        "duration": "30d", "renewBefore": "5d"}
    return {"apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def condition(obj, t):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == t:
            return c
    return None


def conds(obj):
    return [f"{c['type']}={c['status']} {c.get('reason')}: {c.get('message')}"
            for c in ((obj or {}).get("status") or {}).get("conditions") or []]


def log_entries(mid):
    entries = api("GET", f"log/{mid}") or []
    out = {"FAILURE": [], "WARNING": []}
    for e in entries:
        r = e.get("result")
        if r in out:
            out[r].append(f"{e.get('src')}: {e.get('msg')}")
    return out


# --- one variant -------------------------------------------------------------------------------
def run_variant(variant):
    alias = f"tpp-operator-{variant.replace('_', '-')}"
    name, server = f"conf-{variant.replace('_', '-')}", f"suite-{variant.replace('_', '-')}"
    vsel = {"client_auth_type": variant, "sender_constrain": "mtls"}
    rows, notes = [], []
    if variant == "mtls":
        kubectl("create", "secret", "tls", "mtls-transport", f"--cert={ENV['MTLS_CLIENT_CRT']}",
                f"--key={ENV['MTLS_CLIENT_KEY']}", check=False)

    log(variant, "bootstrap plan (throwaway client)")
    jwks, cert = throwaway_client()
    server_jwks = {"keys": [rsa_jwk(f"suite-{variant}", True)]}
    boot_cfg = {"alias": alias, "description": "tpp-operator bootstrap (not counted)", "server": {"jwks": server_jwks},
                "client": {"client_id": f"conformance-{variant}", "jwks": jwks, "certificate": cert}}
    plan = api("POST", "plan", {"planName": PLAN, "variant": json.dumps(vsel)}, boot_cfg)
    first = plan["modules"][0]
    boot = api("POST", "runner", runner_params(first, plan))
    until_waiting(boot["id"])
    exposed = api("GET", f"runner/{boot['id']}").get("exposed") or {}
    issuer = exposed.get("issuer")
    log(variant, "suite issuer", issuer, "exposed", json.dumps(exposed))

    # The FAPI2 preflight first, as a user would; then profile None if it refuses this AS.
    apply(server_obj(server, issuer, exposed.get("discoveryUrl"), "FAPI2"))
    s = wait("AuthorizationServer Ready or Stalled", lambda: (lambda o: o if (condition(o, "Ready") or {}).get("status") == "True"
              or (condition(o, "Stalled") or {}).get("status") == "True" else None)(kget("authorizationserver", server)), 90)
    if (condition(s, "Ready") or {}).get("status") != "True":
        notes.append("AuthorizationServer profile FAPI2 refused the suite's discovery document: " + "; ".join(conds(s)))
        log(variant, notes[-1])
        apply(server_obj(server, issuer, exposed.get("discoveryUrl"), "None"))
        wait("AuthorizationServer Ready (profile None)",
             lambda: (condition(kget("authorizationserver", server), "Ready") or {}).get("status") == "True", 90)
    apply(client_obj(name, server, variant, []))
    jwks_cm = wait("the operator's JWKS ConfigMap", lambda: kget("configmap", f"{name}-jwks"), 120)
    client_jwks = json.loads(jwks_cm["data"]["jwks.json"])
    # Static without a served jwks_uri: every key waits for approval (docs/getting-started-ofm.md,
    # "The approval gate"). The JWKS goes into the plan configuration below, before any token
    # is asked for; the annotation says so, as a user does after uploading it at the bank.
    kids = ",".join(k["kid"] for k in client_jwks["keys"])
    kubectl("annotate", "--overwrite", "tppclient", name, f"tpp.dev/approved-kids={kids}")
    creds = wait("tls.crt in the credentials Secret",
                 lambda: (lambda f: f if "tls.crt" in f else None)(secret_files(f"{name}-credentials")), 120)
    api("DELETE", f"runner/{boot['id']}")

    cfg = {"alias": alias, "description": f"tpp-operator Static TppClient {NS}/{name}", "server": {"jwks": server_jwks},
           "client": {"client_id": f"conformance-{variant}", "jwks": client_jwks,
                      "certificate": creds["tls.crt"].decode()}}
    plan = api("POST", "plan", {"planName": PLAN, "variant": json.dumps(vsel)}, cfg)
    log(variant, "plan", plan["id"], "modules", [m["testModule"] for m in plan["modules"]])
    for n, m in enumerate(plan["modules"]):
        row = {"module": m["testModule"], "variant": f"client_auth_type={variant}, sender_constrain=mtls",
               "plan": plan["id"], "id": None, "result": None, "status": None, "warnings": [], "failures": [],
               "notes": []}
        rows.append(row)
        try:
            t = api("POST", "runner", runner_params(m, plan))
            row["id"] = t["id"]
            until_waiting(t["id"])
            exposed = api("GET", f"runner/{t['id']}").get("exposed") or {}
            before = secret_files(f"{name}-credentials").get("accounts.access_token")
            if n == 0 and not before:
                apply(client_obj(name, server, variant, [{"name": "accounts", "scope": "accounts"}]))
            else:
                kubectl("annotate", "--overwrite", "tppclient", name, f"tpp.dev/renew-tokens={t['id']}")
            try:
                files = wait("a new accounts.access_token", lambda: (lambda f: f if f.get("accounts.access_token")
                             and f.get("accounts.access_token") != before else None)(secret_files(f"{name}-credentials")), 120)
                url = exposed.get("accounts_endpoint")
                status, body = call_resource(url, files)
                row["notes"].append(f"consumer GET {url}: HTTP {status}")
                log(variant, m["testModule"], f"resource endpoint HTTP {status}")
            except TimeoutError as e:
                row["notes"].append(str(e) + "; TppClient: " + "; ".join(conds(kget("tppclient", name))))
            try:
                wait_state(t["id"], {"FINISHED", "INTERRUPTED"}, 90)
            except TimeoutError as e:
                row["notes"].append(str(e))
            info = module_info(t["id"])
            row["status"], row["result"] = info.get("status"), info.get("result")
            le = log_entries(t["id"])
            row["warnings"], row["failures"] = le["WARNING"], le["FAILURE"]
        except Exception as e:  # reported, never hidden
            row["notes"].append(f"driver: {type(e).__name__}: {e}")
        log(variant, m["testModule"], row["status"], row["result"], f"{len(row['warnings'])} warnings",
            f"{len(row['failures'])} failures", row["notes"])
    return rows, notes


def main():
    global ENV, RUN, RESULTS, NS, CA
    RUN = sys.argv[1]
    ENV = dict(l.split("=", 1) for l in open(os.path.join(RUN, "env")).read().splitlines() if "=" in l)
    RESULTS = sys.argv[2] if len(sys.argv) > 2 else os.path.join(RUN, "results.json")
    NS, CA = ENV["NAMESPACE"], ENV["CA"]
    out = {"suite_commit": ENV.get("SUITE_COMMIT"), "plan": PLAN, "rows": [], "notes": {}}
    for v in VARIANTS:
        try:
            rows, notes = run_variant(v)
        except Exception as e:
            rows, notes = [], [f"driver: {type(e).__name__}: {e}"]
            log(v, "variant aborted:", notes[-1])
        out["rows"] += rows
        out["notes"][v] = notes
        with open(RESULTS, "w") as f:
            json.dump(out, f, indent=2)
    md = ["| Module | Variant | Result | Warnings |", "| --- | --- | --- | --- |"]
    for r in out["rows"]:
        md.append(f"| {r['module']} | {r['variant']} | {r['result'] or r['status'] or 'not run'} "
                  f"| {len(r['warnings'])}{': ' + '<br>'.join(r['warnings']) if r['warnings'] else ''} |")
    md.append("")
    for r in out["rows"]:
        if r["failures"] or r["notes"]:
            md.append(f"- {r['module']} ({r['variant']}, test id {r['id']}):")
            md += [f"  - FAILURE {f}" for f in r["failures"]] + [f"  - {n}" for n in r["notes"]]
    for v, notes in out["notes"].items():
        md += [f"- {v}: {n}" for n in notes]
    text = "\n".join(md)
    with open(os.path.splitext(RESULTS)[0] + ".md", "w") as f:
        f.write(text + "\n")
    print("\n" + text)
    ok = out["rows"] and all(r["result"] in ("PASSED", "WARNING") for r in out["rows"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
