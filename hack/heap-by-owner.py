#!/usr/bin/env python3
"""Live heap of a heaptrack recording by owner (BENCHMARKS.md, "Heap profile").

Usage: hack/heap-by-owner.py <heaptrack file (.gz or .zst), or heaptrack_print's text of it> [--other K]

Each allocation still live at the end (for an operator SIGKILLed by bench-scale: live at the
kill) goes to the first owner whose keyword appears in its backtrace; the rest is "other".
Needs heaptrack_print (Debian's heaptrack).
"""
import re,sys,subprocess
cats=[("TLS session tickets (rustls client cache)",["NewSessionTicket","handle_new_ticket","ClientSessionMemoryCache","LatestTicket","LimitedCache"]),
("event series cache (kube-runtime Recorder)",["events..Recorder","events::Recorder"]),
("parsed RSA keys (aws-lc state: Montgomery contexts, blinding)",["freeze_private_key","BN_MONT_CTX","BN_BLINDING","rsa_default_private_transform","RsaKeyPair","jent_"]),
("idle AS connections (hyper/rustls buffers, channels)",["hyper::proto::h1","mpsc::chan::channel","DeframerVecBuffer","ConnectionCore","hyper_util::client::legacy::pool","for_client","MidHandshake"]),
("AS clients (reqwest builds, TLS configs)",["ClientBuilder::build","new_rustls_tls","AsClient::new","ClientPool::client","tls_config"]),
# The Secret cache, split by the write whose answer filled the entry (BENCHMARKS.md, "Heap
# profile at 10,000"); the watch's names and resourceVersions apart.
("Secret cache: <name>-keys",["SecretCache::remember&Session::persist_keys"]),
("Secret cache: <name>-credentials",["SecretCache::remember&Session::save_credentials"]),
("Secret cache: <name>-registration",["SecretCache::remember&registration::persist"]),
("Secret cache: names listed by the watch",["SecretCache::seen"]),
("Secret cache (keys, registration, credentials data)",["SecretCache::remember","SecretCache"]),
("watch caches (TppClients, AuthorizationServers)",["reflector::store::Writer","apply_watcher_event"]),
("JWKS documents served",["jwks_endpoint"]),
("controller queue and scheduler",["kube_runtime..scheduler","kube_runtime::scheduler","controller..runner","HoldUnless"]),
("per-client metric series",["Metrics::set_ready","record_metrics"]),
("status ledger",["StatusLedger"]),
("key-generation queue",["KeygenAdmission"]),
]
f=sys.argv[1]
other_k=int(sys.argv[sys.argv.index("--other")+1]) if "--other" in sys.argv else 0
if f.endswith(".txt"):
    out=open(f).read()
else:
    out=subprocess.run(["heaptrack_print","-f",f,"-p","0","-a","0","-T","0","-l","1","-n","100000","-s","0","--merge-backtraces","0"],capture_output=True,text=True).stdout
blocks=re.split(r'\n(?=\S[^\n]* leaked over )',out)
unit={'B':1,'K':1024,'M':1024**2,'G':1024**3}
tot={};total=0;others=[]
for b in blocks:
    m=re.match(r'([\d.]+)([BKMG]) leaked over',b)
    if not m: continue
    v=float(m.group(1))*unit[m.group(2)]; total+=v
    c="other (allocations spread over runtime, serde, tracing, …)"
    for name,keys in cats:
        # "a&b": both in the backtrace.
        if any(all(p in b for p in k.split("&")) for k in keys): c=name;break
    tot[c]=tot.get(c,0)+v
    if c.startswith("other"): others.append((v,b))
for k,v in sorted(tot.items(),key=lambda x:-x[1]): print(f"{v/1048576:8.2f} MiB  {k}")
print(f"{total/1048576:8.2f} MiB  total live heap at the kill")
for v,b in sorted(others,key=lambda x:-x[0])[:other_k]:
    frames=[l.strip() for l in b.splitlines()[1:] if l.strip() and not l.strip().startswith("in ") and not l.strip().startswith("0x")]
    print(f"\n{v/1048576:8.2f} MiB other: "+" <- ".join(fr[:90] for fr in frames[:8]))
