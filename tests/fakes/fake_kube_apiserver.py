#!/usr/bin/env python3
"""A fake Kubernetes API server for tests (Python standard library + PyYAML).

There is no Kubernetes API server on the test machine, so Metaparticle's
Kubernetes client code is tested against this fake.  The same tests also run
against a real cluster (MP_TEST_KUBECONFIG), so the fake follows the Kubernetes
API conventions and the real server's observable behaviour wherever client code
can rely on it.

Reproduced (as the real kube-apiserver does it):
  * Transport: HTTP/1.1 keep-alive, optional TLS, bearer-token auth (401
    Status "Unauthorized"), client certificates signed by --client-ca.
  * URL layout: /api/v1/..., /apis/{group}/{version}/..., namespaced and
    cluster-scoped resources, all-namespaces lists, /status subresource,
    the legacy /watch/ path prefix; discovery (/api, /apis, /apis/{g},
    /apis/{g}/{v}, /api/v1), /version, /healthz, /readyz, /livez.
  * Resources: namespaces ("default", "kube-system", "kube-public" pre-exist),
    pods (+ /log, follow=true streams), services (clusterIP / nodePort
    allocation), configmaps, secrets, serviceaccounts, events, endpoints,
    coordination.k8s.io/v1 leases, apps/v1 deployments/replicasets/
    statefulsets, batch/v1 jobs, rbac roles/bindings, apiextensions.k8s.io/v1
    customresourcedefinitions and the custom resources they define (served
    only once the CRD is Established, ~100-300 ms after creation; validated
    against the structural openAPIV3Schema - type, required, enum, min/max,
    pattern, format date-time - and pruned of unknown fields, as the real
    server silently does).
  * Verbs: get, list (labelSelector with =,==,!=,in,notin,exists,!exists;
    fieldSelector on metadata.name/namespace and a few per-type fields, other
    field labels -> 400; limit/continue), create (generateName, DNS-1123
    names, uid, creationTimestamp, resourceVersion, generation for types that
    track it, 409 AlreadyExists, 404 for a missing namespace, 403 for a
    terminating one), update (resourceVersion compare-and-swap -> 409
    Conflict; Lease rejects unconditional update with 422 and creates on
    update; others allow unconditional update and 404 on a missing object;
    no-op updates do not bump resourceVersion; generation bumps when anything
    but metadata/status changes), delete (preconditions, finalizers,
    Status-or-object reply like the real registry, namespace deletion goes
    through Terminating and removes the namespace's objects, garbage
    collection of dependents through ownerReferences unless
    propagationPolicy=Orphan), deletecollection, patch (json-patch,
    merge-patch, strategic-merge-patch with merge keys for built-in types
    only -> 415 for custom resources, server-side apply with fieldManager
    (422 without), field ownership in metadata.managedFields and 409 apply
    conflicts unless force=true), dryRun=All.
  * One global, increasing resourceVersion.  Every error is a v1 Status.
  * Watch: chunked newline-delimited JSON events (ADDED, MODIFIED, DELETED,
    BOOKMARK, ERROR); resourceVersion ""/"0" -> synthetic ADDED events for
    the current state; RV=N -> every change after N from a bounded history;
    too old -> one ERROR event (Status 410 Expired "too old resource version:
    N (M)"); objects entering/leaving a selector become ADDED/DELETED;
    timeoutSeconds ends the stream cleanly; allowWatchBookmarks.
  * Lease MicroTime fields must have exactly 6 fractional digits (400
    BadRequest otherwise, as the real decoder does) and are normalised to UTC.
  * Workloads: Deployments -> ReplicaSet "<name>-<hash>" -> Pods
    "<name>-<hash>-<rand5>" that become Running/Ready; Deployment/ReplicaSet
    status; rolling to a new template; StatefulSets "<name>-<i>"; Jobs run a
    Pod to completion (status.succeeded, Complete condition).  An image
    containing "fail-pull" gives Pending pods waiting with ErrImagePull,
    "crashloop" gives CrashLoopBackOff (Jobs: failed pods up to backoffLimit).

Not reproduced (client code must not rely on the fake for these):
  * RBAC/authorization (everything authenticated is allowed; use
    POST /fake/fail?code=403 to simulate Forbidden), admission, quotas.
  * Protobuf, Table output, OpenAPI documents, field validation warnings,
    graceful pod termination (pods are removed at once), real scheduling.
  * Exact server-side apply semantics: lists are atomic (no merge keys),
    managedFields use a simplified FieldsV1 set; managedFields sent by the
    client in an update are ignored.
  * Version conversion: every served version of a custom resource shares one
    storage and just gets its apiVersion rewritten.
  * The bounded watch history is per server, not per resource.

Control endpoints (test helpers, no auth needed, not part of Kubernetes):
  POST /fake/compact            compact history to now and close every watch
  POST /fake/fail?count=N&code=500&path_contains=...&method=...
                                the next N matching requests fail with code.
        Fault-injection extras (chaos tests): &delay=SECONDS waits before
        answering; code=0 answers normally after the delay (a slow server);
        &drop=1 closes the connection without an answer after the delay (a
        client timeout); &probability=P fires on a matching request with
        probability P only (a fired request counts against N)
  POST /fake/clear-failures     forget every /fake/fail rule not yet used up
  POST /fake/logs/{ns}/{pod}    append the request body to that pod's log
  GET  /fake/requests           recent requests: method, path, content_type,
                                status, user_agent
  POST /fake/reset-requests     forget the recorded requests

Run: fake_kube_apiserver.py [--host 127.0.0.1] [--port 0] [--tls-cert F
--tls-key F] [--client-ca F] [--token T] [--history N] [--exit-on-stdin-eof]
[--state-file F]
It prints "LISTENING <url>" (flushed) once it accepts connections.
--state-file F plays etcd: every committed change is written to F (atomically,
before the request is answered) and a server started on an existing F serves
its objects and resourceVersion again, so the server can be killed and
restarted (same --port) like a real API server. Watch history does not
survive: a watch from an older resourceVersion gets 410 Expired.
"""

import argparse
import base64
import copy
import datetime
import hashlib
import heapq
import http.server
import itertools
import json
import os
import queue
import random
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

import yaml

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
MICROTIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{6})(Z|[+-]\d{2}:\d{2})$")
RAND_CHARS = "bcdfghjklmnpqrstvwxz2456789"

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
               "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           406: "NotAcceptable", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rand5():
    return "".join(random.choice(RAND_CHARS) for _ in range(5))


def gofmt(value):
    """Render a value roughly like Go's %#v / %q in validation messages."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


class _NoTimestampLoader(yaml.SafeLoader):
    """YAML loader that keeps timestamps as strings (like sigs.k8s.io/yaml)."""


_NoTimestampLoader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class ApiError(Exception):
    delay = 0.0    # injected faults (/fake/fail): seconds to wait before answering
    drop = False   # injected faults: close the connection without answering

    def __init__(self, code, message, reason=None, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def status(self):
        return status_object(self.code, self.message, self.reason, self.details)


def status_object(code, message, reason, details=None):
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
          "reason": reason, "code": code}
    if details:
        st["details"] = details
    return st


def _details(rt, name, kind=None):
    d = {}
    if name:
        d["name"] = name
    if rt is not None and rt.group:
        d["group"] = rt.group
    d["kind"] = kind if kind is not None else (rt.resource if rt is not None else "")
    return d


def err_not_found(rt, name):
    return ApiError(404, f'{rt.qualified} "{name}" not found', "NotFound", _details(rt, name))


def err_already_exists(rt, name):
    return ApiError(409, f'{rt.qualified} "{name}" already exists', "AlreadyExists", _details(rt, name))


def err_conflict(rt, name, why="the object has been modified; please apply your changes to the latest version "
                               "and try again"):
    return ApiError(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}', "Conflict",
                    _details(rt, name))


def err_invalid(rt, name, causes):
    """causes: list of (field, type, detail-message) - type like 'Invalid value: "x"' or 'Required value'."""
    parts = [f"{f}: {t}" + (f": {m}" if m else "") for f, t, m in causes]
    msg = f'{rt.kind}.{rt.group} "{name}" is invalid: ' if rt.group else f'{rt.kind} "{name}" is invalid: '
    msg += parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    reasons = {"Required value": "FieldValueRequired", "Forbidden": "FieldValueForbidden",
               "Unsupported value": "FieldValueNotSupported", "Duplicate value": "FieldValueDuplicate"}
    det = _details(rt, name, rt.kind)
    det["causes"] = [{"reason": next((r for k, r in reasons.items() if t.startswith(k)), "FieldValueInvalid"),
                      "message": t + (f": {m}" if m else ""), "field": f} for f, t, m in causes]
    return ApiError(422, msg, "Invalid", det)


def err_bad_request(message):
    return ApiError(400, message, "BadRequest")


def err_decode(rt, detail):
    return ApiError(400, f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {detail}',
                    "BadRequest")


def deep_get(obj, path, default=None):
    cur = obj
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    return cur


def strip_meta_status(obj, has_status):
    o = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    if has_status:
        o.pop("status", None)
    return o


# ---------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


SMP_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
            "env": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath", "conditions": "type",
            "ownerReferences": "uid", "hostAliases": "ip", "ports": None, "volumeDevices": "devicePath"}


def strategic_merge_patch(target, patch):
    """Strategic merge patch for built-in types (merge keys by field name, $patch directives)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$") or k.startswith("$setElementOrder/") or k.startswith("$retainKeys"):
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, list) and k in SMP_KEYS and isinstance(result.get(k), list) and \
                all(isinstance(i, dict) for i in v):
            key = SMP_KEYS[k]
            if key is None:
                sample = v + result[k]
                key = "containerPort" if any("containerPort" in i for i in sample) else "port"
            merged = [copy.deepcopy(i) for i in result[k]]
            for item in v:
                idx = next((n for n, cur in enumerate(merged) if isinstance(cur, dict)
                            and key in item and cur.get(key) == item.get(key)), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        merged.pop(idx)
                elif idx is None:
                    merged.append({a: b for a, b in item.items() if not a.startswith("$")})
                else:
                    merged[idx] = strategic_merge_patch(merged[idx], item)
            result[k] = merged
        else:
            r = strategic_merge_patch(result.get(k), v)
            if r is None:
                result.pop(k, None)
            else:
                result[k] = r
    return result


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise err_bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902 JSON patch."""
    if not isinstance(ops, list):
        raise err_bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def parent(parts):
        cur = doc
        for p in parts[:-1]:
            if isinstance(cur, list):
                cur = cur[int(p)]
            else:
                cur = cur[p]
        return cur

    def get(parts):
        cur = doc
        for p in parts:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    for op in ops:
        try:
            kind = op["op"]
            parts = _pointer(op["path"])
            if kind in ("add", "replace", "test"):
                value = copy.deepcopy(op["value"])
            if kind == "test":
                if get(parts) != value:
                    raise ApiError(422, f"the server rejected our request due to an error in our request: "
                                        f"testing value {op['path']} failed", "Invalid")
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(get(_pointer(op["from"])))
                if kind == "move":
                    fp = _pointer(op["from"])
                    par = parent(fp)
                    if isinstance(par, list):
                        par.pop(int(fp[-1]))
                    else:
                        del par[fp[-1]]
                kind = "add"
            if not parts:
                if kind in ("add", "replace"):
                    doc = value
                    continue
                raise err_bad_request("cannot remove the root")
            par = parent(parts)
            last = parts[-1]
            if isinstance(par, list):
                if kind == "add":
                    par.insert(len(par) if last == "-" else int(last), value)
                elif kind == "replace":
                    par[int(last)] = value
                elif kind == "remove":
                    par.pop(int(last))
            else:
                if kind == "add":
                    par[last] = value
                elif kind == "replace":
                    if last not in par:
                        raise KeyError(last)
                    par[last] = value
                elif kind == "remove":
                    del par[last]
                else:
                    raise err_bad_request(f"unexpected json patch operation {kind!r}")
        except ApiError:
            raise
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ApiError(422, f"the server rejected our request due to an error in our request: "
                                f"json patch {op!r} failed: {e}", "Invalid")
    return doc


# ---------------------------------------------------------------------------
# Field ownership (simplified server-side apply)
# ---------------------------------------------------------------------------

META_SYSTEM = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
               "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generateName"}


def leaf_paths(obj, prefix=()):
    out = set()
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out |= leaf_paths(v, prefix + (k,))
    elif prefix:
        out.add(prefix)
    return out


def owned_paths(obj, subresource=""):
    """Leaf paths of an object that can be owned by a field manager."""
    paths = set()
    for p in leaf_paths(obj):
        if p[0] in ("apiVersion", "kind"):
            continue
        if p[0] == "metadata" and (len(p) < 2 or p[1] in META_SYSTEM):
            continue
        if subresource == "status" and p[0] != "status":
            continue
        paths.add(p)
    return paths


def fields_v1(paths):
    root = {}
    for p in sorted(paths):
        cur = root
        for k in p:
            cur = cur.setdefault("f:" + k, {})
    return root


def parse_fields_v1(fields, prefix=()):
    out = set()
    if not isinstance(fields, dict):
        return out
    for k, v in fields.items():
        if k.startswith("f:"):
            path = prefix + (k[2:],)
            if isinstance(v, dict) and any(c.startswith("f:") for c in v):
                out |= parse_fields_v1(v, path)
            else:
                out.add(path)
    return out


def related(p, q):
    n = min(len(p), len(q))
    return p[:n] == q[:n]


def delete_path(obj, path):
    cur = obj
    for k in path[:-1]:
        if not isinstance(cur, dict) or not isinstance(cur.get(k), dict):
            return
        cur = cur[k]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)


def apply_merge(target, applied):
    """Deep merge of an applied configuration: maps merge, everything else (lists) replaces."""
    if not isinstance(applied, dict) or not isinstance(target, dict):
        return copy.deepcopy(applied)
    result = dict(target)
    for k, v in applied.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = apply_merge(result.get(k), v)
    return result


def get_path(obj, path):
    cur = obj
    for k in path:
        if not isinstance(cur, dict) or k not in cur:
            return ("<absent>",)
        cur = cur[k]
    return cur


class ManagedFields:
    """metadata.managedFields as a list of (manager, operation, subresource) -> set of paths."""

    def __init__(self, entries, api_version):
        self.api_version = api_version
        self.entries = []  # list of dicts: manager, operation, subresource, paths, time, apiVersion
        for e in entries or []:
            if not isinstance(e, dict):
                continue
            self.entries.append({"manager": e.get("manager", ""), "operation": e.get("operation", "Update"),
                                 "subresource": e.get("subresource", ""), "time": e.get("time"),
                                 "apiVersion": e.get("apiVersion", api_version),
                                 "paths": parse_fields_v1(e.get("fieldsV1", {}))})

    def entry(self, manager, operation, subresource):
        for e in self.entries:
            if (e["manager"], e["operation"], e["subresource"]) == (manager, operation, subresource):
                return e
        e = {"manager": manager, "operation": operation, "subresource": subresource, "time": None,
             "apiVersion": self.api_version, "paths": set()}
        self.entries.append(e)
        return e

    def record_update(self, manager, subresource, old, new):
        """An Update operation takes ownership of every field it changed."""
        old_paths = owned_paths(old or {}, subresource)
        new_paths = owned_paths(new, subresource)
        changed = {p for p in new_paths if get_path(old or {}, p) != get_path(new, p)}
        removed = old_paths - new_paths
        for e in self.entries:
            e["paths"] = {q for q in e["paths"] if not any(q == r or q[:len(r)] == r for r in removed)
                          and q not in changed}
        if changed:
            e = self.entry(manager, "Update", subresource)
            before = set(e["paths"])
            e["paths"] |= changed
            if e["paths"] != before or e["time"] is None:
                e["time"] = now_rfc3339()
        self._prune()

    def _prune(self):
        self.entries = [e for e in self.entries if e["paths"]]

    def render(self):
        return [{"manager": e["manager"], "operation": e["operation"], "apiVersion": e["apiVersion"],
                 "time": e["time"] or now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": fields_v1(e["paths"]),
                 **({"subresource": e["subresource"]} if e["subresource"] else {})}
                for e in self.entries]


# ---------------------------------------------------------------------------
# Label and field selectors
# ---------------------------------------------------------------------------

def _split_selector(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(s):
    reqs = []
    if not s:
        return reqs
    for part in _split_selector(s):
        m = re.match(r"^([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)$", part)
        if m:
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(1), m.group(2), vals))
            continue
        m = re.match(r"^([^\s!=()]+)\s*(==|!=|=)\s*([^\s!=(),]*)$", part)
        if m:
            op = {"==": "=", "=": "=", "!=": "!="}[m.group(2)]
            reqs.append((m.group(1), op, m.group(3)))
            continue
        m = re.match(r"^(!?)\s*([^\s!=(),]+)$", part)
        if m:
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", None))
            continue
        raise err_bad_request(f"unable to parse requirement: found '{part}', expected: identifier")
    for key, _, _ in reqs:
        name = key.split("/")[-1]
        if not LABEL_NAME.match(name) or len(name) > 63:
            raise err_bad_request(f'unable to parse requirement: values[0][{key}]: Invalid value: "{key}": '
                                  f'name part must consist of alphanumeric characters')
    return reqs


def label_match(reqs, obj):
    labels = deep_get(obj, ("metadata", "labels")) or {}
    for key, op, val in reqs:
        have = key in labels
        v = labels.get(key)
        if op == "=" and (not have or v != val):
            return False
        if op == "!=" and have and v == val:
            return False
        if op == "in" and (not have or v not in val):
            return False
        if op == "notin" and have and v in val:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
    return True


def parse_field_selector(s, rt):
    reqs = []
    if not s:
        return reqs
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", part)
        if not m:
            raise err_bad_request(f"invalid selector: '{s}'; can't understand '{part}'")
        field, op, val = m.group(1), m.group(2), m.group(3)
        if field not in ("metadata.name", "metadata.namespace") and field not in rt.field_labels:
            raise err_bad_request(f'field label not supported: {field}')
        reqs.append((field.split("."), "!=" if op == "!=" else "=", val))
    return reqs


def field_match(reqs, obj):
    for path, op, val in reqs:
        v = deep_get(obj, path)
        v = "" if v is None else (json.dumps(v) if isinstance(v, bool) else str(v))
        if (v == val) != (op == "="):
            return False
    return True


# ---------------------------------------------------------------------------
# Resource types
# ---------------------------------------------------------------------------

class ResourceType:
    def __init__(self, group, version, resource, kind, namespaced=True, singular=None, short_names=(),
                 has_status=False, track_generation=False, unconditional_update=True, create_on_update=False,
                 return_deleted=False, field_labels=(), validate=None, default=None, versions=None,
                 schemas=None, status_versions=None, crd_name=None, categories=()):
        self.group = group
        self.version = version                     # preferred/storage version
        self.versions = versions or [version]      # served versions
        self.resource = resource
        self.kind = kind
        self.list_kind = kind + "List"
        self.namespaced = namespaced
        self.singular = singular or kind.lower()
        self.short_names = list(short_names)
        self.categories = list(categories)
        self.has_status = has_status
        self.status_versions = status_versions     # CRs: versions with a status subresource
        self.track_generation = track_generation
        self.unconditional_update = unconditional_update
        self.create_on_update = create_on_update
        self.return_deleted = return_deleted
        self.field_labels = set(field_labels)
        self.validate = validate
        self.default = default
        self.schemas = schemas or {}               # CRs: version -> openAPIV3Schema
        self.crd_name = crd_name
        self.is_custom = crd_name is not None

    @property
    def qualified(self):
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def gr(self):
        return (self.group, self.resource)

    def api_version(self, version=None):
        v = version or self.version
        return f"{self.group}/{v}" if self.group else v

    def status_enabled(self, version=None):
        if self.status_versions is not None:
            return (version or self.version) in self.status_versions
        return self.has_status


def _req(causes, obj, path, field):
    v = deep_get(obj, path)
    if v in (None, "", [], {}):
        causes.append((field, "Required value", ""))
        return None
    return v


def _validate_containers(causes, spec, base):
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not containers:
        causes.append((f"{base}.containers", "Required value", ""))
        return
    if not isinstance(containers, list):
        return
    names = set()
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            continue
        if not c.get("name"):
            causes.append((f"{base}.containers[{i}].name", "Required value", ""))
        elif not DNS1123_LABEL.match(str(c["name"])):
            causes.append((f"{base}.containers[{i}].name", f"Invalid value: {gofmt(c['name'])}", LABEL_MSG))
        elif c["name"] in names:
            causes.append((f"{base}.containers[{i}].name", f"Duplicate value: {gofmt(c['name'])}", ""))
        names.add(c.get("name"))
        if not c.get("image"):
            causes.append((f"{base}.containers[{i}].image", "Required value", ""))


def _selector_matches(selector, labels):
    if not isinstance(selector, dict):
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def validate_pod(obj, old):
    causes = []
    _validate_containers(causes, obj.get("spec") or {}, "spec")
    return causes


def default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(c, dict):
            continue
        img = str(c.get("image", ""))
        tag = img.rsplit("/", 1)[-1]
        c.setdefault("imagePullPolicy", "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in img
                     else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        for p in c.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")


def default_pod(obj, old):
    spec = obj.setdefault("spec", {})
    default_pod_spec(spec)
    if old is None:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def default_template_owner(obj, old):
    spec = obj.setdefault("spec", {})
    tmpl = spec.setdefault("template", {})
    if isinstance(tmpl, dict):
        default_pod_spec(tmpl.setdefault("spec", {}))


def default_deployment(obj, old):
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("strategy", {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    default_template_owner(obj, old)


def validate_workload(obj, old):
    causes = []
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    if not sel:
        causes.append(("spec.selector", "Required value", ""))
    tmpl_labels = deep_get(spec, ("template", "metadata", "labels")) or {}
    if sel and not _selector_matches(sel, tmpl_labels):
        causes.append(("spec.template.metadata.labels", f"Invalid value: {gofmt(tmpl_labels)}",
                       "`selector` does not match template `labels`"))
    if old is not None and sel and deep_get(old, ("spec", "selector")) != sel:
        causes.append(("spec.selector", f"Invalid value: {gofmt(sel)}", "field is immutable"))
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(("spec.replicas", f"Invalid value: {gofmt(replicas)}",
                       "must be greater than or equal to 0"))
    _validate_containers(causes, deep_get(spec, ("template", "spec")) or {}, "spec.template.spec")
    return causes


def default_statefulset(obj, old):
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    default_template_owner(obj, old)


def default_job(obj, old):
    spec = obj.setdefault("spec", {})
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if old is None and not spec.get("manualSelector"):
        uid = obj["metadata"]["uid"]
        labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": obj["metadata"]["name"],
                  "controller-uid": uid, "job-name": obj["metadata"]["name"]}
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
        tmeta.setdefault("labels", {}).update(labels)
    default_template_owner(obj, old)


def validate_job(obj, old):
    causes = []
    spec = obj.get("spec") or {}
    tspec = deep_get(spec, ("template", "spec")) or {}
    rp = tspec.get("restartPolicy")
    if rp not in ("OnFailure", "Never"):
        causes.append(("spec.template.spec.restartPolicy", f"Unsupported value: {gofmt(rp or 'Always')}",
                       'supported values: "OnFailure", "Never"'))
    _validate_containers(causes, tspec, "spec.template.spec")
    if old is not None and deep_get(old, ("spec", "template")) != spec.get("template") \
            and not deep_get(old, ("spec", "suspend")):
        causes.append(("spec.template", f"Invalid value: {gofmt(spec.get('template'))}", "field is immutable"))
    return causes


def validate_service(obj, old):
    causes = []
    spec = obj.get("spec") or {}
    if not DNS1035_LABEL.match(obj["metadata"]["name"]):
        causes.append(("metadata.name", f"Invalid value: {gofmt(obj['metadata']['name'])}", DNS1035_MSG))
    if spec.get("type", "ClusterIP") != "ExternalName" and not spec.get("ports") and spec.get("clusterIP") != "None":
        causes.append(("spec.ports", "Required value", ""))
    if old is not None and deep_get(old, ("spec", "clusterIP")) and spec.get("clusterIP") not in (
            None, "", deep_get(old, ("spec", "clusterIP"))):
        causes.append(("spec.clusterIP", f"Invalid value: {gofmt(spec.get('clusterIP'))}", "field is immutable"))
    for i, p in enumerate(spec.get("ports") or []):
        if isinstance(p, dict) and not isinstance(p.get("port"), int):
            causes.append((f"spec.ports[{i}].port", f"Invalid value: {gofmt(p.get('port'))}",
                           "must be between 1 and 65535, inclusive"))
    return causes


_ip_counter = itertools.count(10)
_port_counter = itertools.count(30000)


def default_service(obj, old):
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if old is not None:
        for k in ("clusterIP", "clusterIPs"):
            if deep_get(old, ("spec", k)) and not spec.get(k):
                spec[k] = copy.deepcopy(old["spec"][k])
    if spec["type"] != "ExternalName":
        if not spec.get("clusterIP"):
            n = next(_ip_counter)
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    old_ports = {p.get("port"): p for p in deep_get(old or {}, ("spec", "ports")) or [] if isinstance(p, dict)}
    for p in spec.get("ports") or []:
        if not isinstance(p, dict):
            continue
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))
        if spec["type"] in ("NodePort", "LoadBalancer") and not p.get("nodePort"):
            p["nodePort"] = old_ports.get(p.get("port"), {}).get("nodePort") or next(_port_counter)
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    obj.setdefault("status", {"loadBalancer": {}})


def default_namespace(obj, old):
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    if old is None:
        obj["status"] = {"phase": "Active"}


def validate_namespace(obj, old):
    name = obj["metadata"]["name"]
    if not DNS1123_LABEL.match(name) or len(name) > 63:
        return [("metadata.name", f"Invalid value: {gofmt(name)}", LABEL_MSG)]
    return []


def _check_microtime(rt, obj, field):
    v = deep_get(obj, ("spec", field))
    if v is None:
        return
    if not isinstance(v, str):
        raise err_decode(rt, f"json: cannot unmarshal {type(v).__name__} into Go struct field "
                             f"LeaseSpec.spec.{field} of type string")
    m = MICROTIME.match(v)
    if not m:
        raise err_decode(rt, f'parsing time "{v}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse '
                             f'"{v[19:]}" as ".000000"')
    try:
        dt = datetime.datetime.fromisoformat(m.group(1) + "." + m.group(2) +
                                             ("+00:00" if m.group(3) == "Z" else m.group(3)))
    except ValueError:
        raise err_decode(rt, f'parsing time "{v}": day out of range')
    obj["spec"][field] = dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decode_lease(rt, obj):
    spec = obj.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise err_decode(rt, "json: cannot unmarshal into Go struct field Lease.spec of type v1.LeaseSpec")
    for f in ("acquireTime", "renewTime"):
        _check_microtime(rt, obj, f)
    for f in ("leaseDurationSeconds", "leaseTransitions"):
        v = spec.get(f)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            if isinstance(v, float) and v.is_integer():
                spec[f] = int(v)
                continue
            raise err_decode(rt, f"json: cannot unmarshal {type(v).__name__} into Go struct field "
                                 f"LeaseSpec.spec.{f} of type int32")
    for f in ("holderIdentity", "preferredHolder", "strategy"):
        v = spec.get(f)
        if v is not None and not isinstance(v, str):
            raise err_decode(rt, f"json: cannot unmarshal {type(v).__name__} into Go struct field "
                                 f"LeaseSpec.spec.{f} of type string")


def validate_lease(obj, old):
    causes = []
    spec = obj.get("spec") or {}
    d = spec.get("leaseDurationSeconds")
    if d is not None and d <= 0:
        causes.append(("spec.leaseDurationSeconds", f"Invalid value: {d}", "must be greater than 0"))
    t = spec.get("leaseTransitions")
    if t is not None and t < 0:
        causes.append(("spec.leaseTransitions", f"Invalid value: {t}", "must be greater than or equal to 0"))
    return causes


def validate_configmap(obj, old):
    causes = []
    for f in ("data", "binaryData"):
        d = obj.get(f)
        if d is None:
            continue
        for k, v in d.items():
            if not re.match(r"^[-._a-zA-Z0-9]+$", k):
                causes.append((f"{f}[{k}]", f"Invalid value: {gofmt(k)}",
                               "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"))
    return causes


def decode_string_map(rt, obj, field):
    d = obj.get(field)
    if d is None:
        return
    if not isinstance(d, dict) or any(not isinstance(v, str) for v in d.values()):
        raise err_decode(rt, f"json: cannot unmarshal into Go struct field {rt.kind}.{field} of type "
                             f"map[string]string")


def default_secret(obj, old):
    sd = obj.pop("stringData", None)
    if sd:
        data = obj.setdefault("data", {})
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
    obj.setdefault("type", "Opaque")


def validate_crd(obj, old):
    causes = []
    spec = obj.get("spec") or {}
    group = spec.get("group")
    names = spec.get("names") or {}
    if not group:
        causes.append(("spec.group", "Required value", ""))
    elif "." not in group:
        causes.append(("spec.group", f"Invalid value: {gofmt(group)}", "should be a domain with at least one dot"))
    if not names.get("plural"):
        causes.append(("spec.names.plural", "Required value", ""))
    if not names.get("kind"):
        causes.append(("spec.names.kind", "Required value", ""))
    if names.get("plural") and group and obj["metadata"]["name"] != f"{names['plural']}.{group}":
        causes.append(("metadata.name", f"Invalid value: {gofmt(obj['metadata']['name'])}",
                       "must be spec.names.plural+\".\"+spec.group"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(("spec.scope", f"Unsupported value: {gofmt(spec.get('scope', ''))}",
                       'supported values: "Cluster", "Namespaced"'))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(("spec.versions", "Invalid value: null", "must have exactly one version marked as storage "
                                                               "version"))
    elif sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        causes.append(("spec.versions", f"Invalid value: {gofmt(versions)}",
                       "must have exactly one version marked as storage version"))
    for i, v in enumerate(versions):
        if not isinstance(v, dict):
            continue
        if not v.get("name"):
            causes.append((f"spec.versions[{i}].name", "Required value", ""))
        if "served" not in v:
            causes.append((f"spec.versions[{i}].served", "Required value", ""))
        schema = deep_get(v, ("schema", "openAPIV3Schema"))
        if not isinstance(schema, dict):
            causes.append((f"spec.versions[{i}].schema.openAPIV3Schema", "Required value", "schemas are required"))
            continue
        structural_errors(schema, f"spec.versions[{i}].schema.openAPIV3Schema", causes, root=True)
    if old is not None:
        if deep_get(old, ("spec", "scope")) != spec.get("scope"):
            causes.append(("spec.scope", f"Invalid value: {gofmt(spec.get('scope'))}", "field is immutable"))
        if deep_get(old, ("spec", "group")) != group:
            causes.append(("spec.group", f"Invalid value: {gofmt(group)}", "field is immutable"))
    return causes


SCHEMA_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def structural_errors(schema, path, causes, root=False):
    t = schema.get("type")
    if t is not None and t not in SCHEMA_TYPES:
        causes.append((f"{path}.type", f"Unsupported value: {gofmt(t)}",
                       'supported values: "array", "boolean", "integer", "number", "object", "string"'))
    if root and t != "object":
        causes.append((f"{path}.type", "Invalid value: " + gofmt(t or ""), "must be object at the root"))
    if not t and not schema.get("x-kubernetes-preserve-unknown-fields") and \
            not schema.get("x-kubernetes-int-or-string") and not root:
        causes.append((f"{path}.type", "Required value", "must not be empty for specified object fields"))
    for k, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            structural_errors(sub, f"{path}.properties[{k}]", causes)
    if isinstance(schema.get("items"), dict):
        structural_errors(schema["items"], f"{path}.items", causes)
    elif t == "array":
        causes.append((f"{path}.items", "Required value", "must be specified"))
    if isinstance(schema.get("additionalProperties"), dict):
        structural_errors(schema["additionalProperties"], f"{path}.additionalProperties", causes)


def _type_ok(v, t):
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return True


_RX_DATE_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(\.\d+)?(z|[+-]\d{2}:\d{2})$")


def is_date_time(s):
    """kube-openapi strfmt.IsDateTime: "yyyy-mm-ddThh:mm:ss[.frac](Z|+hh:mm)"; "" is not a date-time."""
    if len(s) < 4:
        return False
    parts = s.lower().split("t")
    if len(parts) < 2:
        return False
    try:
        datetime.datetime.strptime(parts[0], "%Y-%m-%d")
    except ValueError:
        return False
    m = _RX_DATE_TIME.match(parts[1])
    return bool(m) and m.group(1) <= "23" and m.group(2) <= "59" and m.group(3) <= "59"


def schema_validate(v, schema, path, causes):
    """Validate and prune v (in place for maps) against a structural schema; returns the pruned value."""
    if v is None:
        if not schema.get("nullable"):
            if schema.get("type"):
                causes.append((path, "Invalid value: \"null\"",
                               f"{path} in body must be of type {schema['type']}: \"null\""))
        return v
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))):
            causes.append((path, f"Invalid value: {gofmt(v)}", f"{path} in body must be of type integer,string: "
                                                                f"{gofmt(type(v).__name__)}"))
        return v
    if t and not _type_ok(v, t):
        gt = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
        causes.append((path, f"Invalid value: {gofmt(gt.get(type(v), 'unknown'))}",
                       f"{path} in body must be of type {t}: {gofmt(gt.get(type(v), 'unknown'))}"))
        return v
    if "enum" in schema and v not in schema["enum"]:
        causes.append((path, f"Unsupported value: {gofmt(v)}",
                       "supported values: " + ", ".join(gofmt(e) for e in schema["enum"])))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in schema and v < schema["minimum"]:
            causes.append((path, f"Invalid value: {v}", f"{path} in body should be greater than or equal to "
                                                         f"{schema['minimum']}"))
        if "maximum" in schema and v > schema["maximum"]:
            causes.append((path, f"Invalid value: {v}", f"{path} in body should be less than or equal to "
                                                         f"{schema['maximum']}"))
    if isinstance(v, str):
        if schema.get("format") in ("date-time", "datetime") and not is_date_time(v):
            causes.append((path, f"Invalid value: {gofmt(v)}", f"{path} in body must be of type date-time: "
                                                                f"{gofmt(v)}"))
        if "minLength" in schema and len(v) < schema["minLength"]:
            causes.append((path, f"Invalid value: {gofmt(v)}", f"{path} in body should be at least "
                                                                f"{schema['minLength']} chars long"))
        if "maxLength" in schema and len(v) > schema["maxLength"]:
            causes.append((path, "Too long: may not be more than %d bytes" % schema["maxLength"], ""))
        if "pattern" in schema and not re.search(schema["pattern"], v):
            causes.append((path, f"Invalid value: {gofmt(v)}", f"{path} in body should match "
                                                                f"'{schema['pattern']}'"))
    if isinstance(v, list):
        if "maxItems" in schema and len(v) > schema["maxItems"]:
            causes.append((path, f"Too many: {len(v)}", f"must have at most {schema['maxItems']} items"))
        if "minItems" in schema and len(v) < schema["minItems"]:
            causes.append((path, f"Invalid value: {len(v)}", f"{path} in body should have at least "
                                                              f"{schema['minItems']} items"))
        items = schema.get("items")
        if isinstance(items, dict):
            return [schema_validate(x, items, f"{path}[{i}]", causes) for i, x in enumerate(v)]
        return v
    if isinstance(v, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        out = {}
        for k, x in v.items():
            sub_path = f"{path}.{k}" if path else k
            if k in props:
                out[k] = schema_validate(x, props[k], sub_path, causes)
            elif isinstance(addl, dict):
                out[k] = schema_validate(x, addl, f"{path}[{k}]", causes)
            elif addl is True or preserve:
                out[k] = x
            # else: pruned, like the real server
        for r in schema.get("required") or []:
            if r not in v:
                causes.append((f"{path}.{r}" if path else r, "Required value", ""))
        return out
    return v


def builtin_types():
    pod_fields = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                  "status.phase", "status.podIP", "status.nominatedNodeName", "spec.hostNetwork")
    ev_fields = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                 "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                 "reason", "reportingComponent", "source", "type")
    return [
        ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, short_names=["ns"], has_status=True,
                     return_deleted=True, field_labels=("status.phase",), validate=validate_namespace,
                     default=default_namespace),
        ResourceType("", "v1", "pods", "Pod", short_names=["po"], has_status=True, return_deleted=True,
                     field_labels=pod_fields, validate=validate_pod, default=default_pod, categories=["all"]),
        ResourceType("", "v1", "services", "Service", short_names=["svc"], has_status=True, return_deleted=True,
                     validate=validate_service, default=default_service, categories=["all"]),
        ResourceType("", "v1", "configmaps", "ConfigMap", short_names=["cm"], validate=validate_configmap),
        ResourceType("", "v1", "secrets", "Secret", field_labels=("type",), default=default_secret),
        ResourceType("", "v1", "serviceaccounts", "ServiceAccount", short_names=["sa"]),
        ResourceType("", "v1", "events", "Event", short_names=["ev"], field_labels=ev_fields),
        ResourceType("", "v1", "endpoints", "Endpoints", short_names=["ep"], create_on_update=True),
        ResourceType("coordination.k8s.io", "v1", "leases", "Lease", unconditional_update=False,
                     create_on_update=True, validate=validate_lease),
        ResourceType("apps", "v1", "deployments", "Deployment", short_names=["deploy"], has_status=True,
                     track_generation=True, validate=validate_workload, default=default_deployment,
                     categories=["all"]),
        ResourceType("apps", "v1", "replicasets", "ReplicaSet", short_names=["rs"], has_status=True,
                     track_generation=True, validate=validate_workload, default=default_template_owner,
                     categories=["all"]),
        ResourceType("apps", "v1", "statefulsets", "StatefulSet", short_names=["sts"], has_status=True,
                     track_generation=True, validate=validate_workload, default=default_statefulset,
                     categories=["all"]),
        ResourceType("batch", "v1", "jobs", "Job", has_status=True, track_generation=True,
                     field_labels=("status.successful",), validate=validate_job, default=default_job,
                     categories=["all"]),
        ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
        ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
                     namespaced=False),
        ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
                     namespaced=False, short_names=["crd", "crds"], has_status=True, track_generation=True,
                     return_deleted=True, validate=validate_crd),
    ]


def crd_resource_type(crd):
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec["versions"] if v.get("served")]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    preferred = storage if any(v["name"] == storage for v in served) else (served[0]["name"] if served else storage)
    rt = ResourceType(spec["group"], preferred, names["plural"], names["kind"],
                      namespaced=spec.get("scope") == "Namespaced", singular=names.get("singular"),
                      short_names=names.get("shortNames") or (), track_generation=True, return_deleted=True,
                      versions=[v["name"] for v in served], crd_name=crd["metadata"]["name"],
                      schemas={v["name"]: deep_get(v, ("schema", "openAPIV3Schema")) or {} for v in served},
                      status_versions={v["name"] for v in served if deep_get(v, ("subresources", "status"))
                                       is not None},
                      categories=names.get("categories") or ())
    rt.list_kind = names.get("listKind") or names["kind"] + "List"
    return rt


# ---------------------------------------------------------------------------
# Watch hub: bounded history of changes + condition variable
# ---------------------------------------------------------------------------

class WatchHub:
    """History of committed changes.  Shares the store's lock; waiters use the condition."""

    def __init__(self, lock, history_size):
        self.cond = threading.Condition(lock)
        self.history = []            # list of events, oldest first
        self.history_size = history_size
        self.compacted = 0           # events with rv <= compacted are gone
        self.epoch = 0               # bumped by /fake/compact: open watches end
        self.closed = False

    def record(self, event):
        """Called with the lock held."""
        self.history.append(event)
        if len(self.history) > self.history_size:
            drop = len(self.history) - self.history_size
            self.compacted = self.history[drop - 1]["rv"]
            del self.history[:drop]
        self.cond.notify_all()

    def compact(self, rv):
        self.history.clear()
        self.compacted = rv
        self.epoch += 1
        self.cond.notify_all()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def events_after(self, rv):
        """Events with rv > given rv (lock held). None if some are gone."""
        if rv < self.compacted:
            return None
        lo, hi = 0, len(self.history)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.history[mid]["rv"] <= rv:
                lo = mid + 1
            else:
                hi = mid
        return self.history[lo:]


# ---------------------------------------------------------------------------
# Store
# ---------------------------------------------------------------------------

class Store:
    """In-memory object store keyed by (group, resource) -> (namespace, name) -> object."""

    def __init__(self, history_size=1000):
        self.lock = threading.RLock()
        self.hub = WatchHub(self.lock, history_size)
        self.rv = 100
        self.objects = {}
        self.types = {}          # (group, version, resource) -> ResourceType (served now)
        self.by_gr = {}          # (group, resource) -> ResourceType
        self.logs = {}           # (ns, pod) -> bytearray
        self.listeners = []      # callables(event) invoked with the lock held (must not block)
        for rt in builtin_types():
            self.register(rt)
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self.by_gr[("", "namespaces")], None, {"metadata": {"name": ns}}, manager="kube-apiserver")

    # -- types --------------------------------------------------------------
    def register(self, rt):
        with self.lock:
            self.unregister(rt.gr)
            self.by_gr[rt.gr] = rt
            for v in rt.versions:
                self.types[(rt.group, v, rt.resource)] = rt
            self.objects.setdefault(rt.gr, {})

    def unregister(self, gr):
        with self.lock:
            old = self.by_gr.pop(gr, None)
            if old:
                for v in old.versions:
                    self.types.pop((old.group, v, old.resource), None)

    def lookup(self, group, version, resource):
        with self.lock:
            return self.types.get((group, version, resource))

    def groups(self):
        with self.lock:
            out = {}
            for rt in self.by_gr.values():
                if rt.group:
                    vs = out.setdefault(rt.group, [])
                    for v in rt.versions:
                        if v not in vs:
                            vs.append(v)
            return out

    # -- low level ------------------------------------------------------------
    def next_rv(self):
        self.rv += 1
        return self.rv

    def _commit(self, rt, etype, ns, name, old, new, orphan=False):
        """Store new (or delete when etype == DELETED) and record the event; lock held."""
        rv = self.next_rv()
        key = (ns or "", name)
        if etype == "DELETED":
            obj = copy.deepcopy(old)
            obj["metadata"]["resourceVersion"] = str(rv)
            self.objects[rt.gr].pop(key, None)
            if rt.gr == ("", "pods"):
                self.logs.pop(key, None)
        else:
            obj = new
            obj["metadata"]["resourceVersion"] = str(rv)
            self.objects[rt.gr][key] = obj
        ev = {"rv": rv, "type": etype, "gr": rt.gr, "ns": ns or "", "name": name, "old": old, "obj": obj,
              "orphan": orphan}
        self.hub.record(ev)
        for cb in self.listeners:
            cb(ev)
        return obj

    def get_obj(self, rt, ns, name):
        with self.lock:
            return self.objects.get(rt.gr, {}).get((ns or "", name))

    def list_objs(self, rt, ns=None):
        with self.lock:
            items = [o for (ons, _), o in self.objects.get(rt.gr, {}).items() if ns is None or ons == ns]
            return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])), \
                str(self.rv)

    # -- verbs --------------------------------------------------------------
    def _check_namespace(self, rt, ns, name):
        if not rt.namespaced:
            return
        nsobj = self.objects[("", "namespaces")].get(("", ns))
        if nsobj is None:
            raise ApiError(404, f'namespaces "{ns}" not found', "NotFound", {"name": ns, "kind": "namespaces"})
        if nsobj.get("status", {}).get("phase") == "Terminating":
            raise ApiError(403, f'{rt.qualified} "{name}" is forbidden: unable to create new content in namespace '
                                f'{ns} because it is being terminated', "Forbidden",
                           _details(rt, name))

    def _prepare(self, rt, obj, version):
        """Common decoding checks of an incoming object."""
        if not isinstance(obj, dict):
            raise err_decode(rt, "json: cannot unmarshal into Go value of type struct")
        kind = obj.get("kind")
        if kind not in (None, "") and kind != rt.kind:
            raise err_bad_request(f"the object provided is unrecognized (must be of type {rt.kind}): "
                                  f"object *{kind} does not implement the protobuf marshalling interface")
        av = obj.get("apiVersion")
        if av not in (None, "") and av != rt.api_version(version) and \
                not (av.split("/")[0] == rt.group and av.split("/")[-1] in rt.versions):
            raise err_bad_request(f'the API version in the data ({av}) does not match the expected API version '
                                  f'({rt.api_version(version)})')
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise err_decode(rt, "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta")
        for f in ("labels", "annotations"):
            v = meta.get(f)
            if v is not None and (not isinstance(v, dict) or any(not isinstance(x, str) for x in v.values())):
                raise err_decode(rt, f"json: cannot unmarshal into Go struct field ObjectMeta.metadata.{f} of "
                                     f"type map[string]string")
        if rt.resource == "leases" and rt.group == "coordination.k8s.io":
            decode_lease(rt, obj)
        if rt.resource in ("configmaps",):
            decode_string_map(rt, obj, "data")
        obj["apiVersion"] = rt.api_version(version)
        obj["kind"] = rt.kind

    def _validate(self, rt, obj, old, version):
        meta = obj["metadata"]
        name = meta.get("name", "")
        causes = []
        if rt.namespaced is False:
            meta.pop("namespace", None)
        if rt.resource != "namespaces" and not (len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)):
            causes.append(("metadata.name", f"Invalid value: {gofmt(name)}", SUBDOMAIN_MSG))
        for f, limit in (("labels", True), ("annotations", False)):
            for k, v in (meta.get(f) or {}).items():
                kname = k.split("/")[-1]
                if not LABEL_NAME.match(kname) or len(kname) > 63 or k.count("/") > 1:
                    causes.append((f"metadata.{f}", f"Invalid value: {gofmt(k)}",
                                   "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                                   "start and end with an alphanumeric character"))
                if limit and (len(v) > 63 or not LABEL_VALUE.match(v)):
                    causes.append((f"metadata.labels", f"Invalid value: {gofmt(v)}",
                                   "a valid label must be an empty string or consist of alphanumeric characters, "
                                   "'-', '_' or '.', and must start and end with an alphanumeric character"))
        if rt.is_custom:
            schema = rt.schemas.get(version) or {}
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            pruned = schema_validate(body, schema, "", causes)
            for k in list(obj):
                if k not in ("apiVersion", "kind", "metadata"):
                    del obj[k]
            obj.update(pruned)
        if rt.validate:
            causes += rt.validate(obj, old)
        if causes:
            raise err_invalid(rt, name, causes)

    def _manager_update(self, rt, obj, old, manager, subresource, version):
        mf = ManagedFields(deep_get(old, ("metadata", "managedFields")) if old else None, rt.api_version(version))
        mf.record_update(manager or "unknown", subresource, old, obj)
        rendered = mf.render()
        if rendered:
            obj["metadata"]["managedFields"] = rendered
        else:
            obj["metadata"].pop("managedFields", None)

    def create(self, rt, ns, obj, version=None, manager=None, dry_run=False):
        with self.lock:
            obj = copy.deepcopy(obj)
            self._prepare(rt, obj, version)
            meta = obj["metadata"]
            if rt.namespaced:
                if meta.get("namespace") and meta["namespace"] != ns:
                    raise err_bad_request("the namespace of the provided object does not match the namespace "
                                          "sent on the request")
                meta["namespace"] = ns
            if not meta.get("name"):
                if meta.get("generateName"):
                    for _ in range(20):
                        meta["name"] = meta["generateName"] + rand5()
                        if (ns or "", meta["name"]) not in self.objects[rt.gr]:
                            break
                else:
                    raise err_invalid(rt, "", [("metadata.name", "Required value", "name or generateName is "
                                                                                    "required")])
            name = meta["name"]
            if meta.get("resourceVersion") not in (None, ""):
                raise ApiError(500, "resourceVersion should not be set on objects to be created", "InternalError")
            for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
                meta.pop(f, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if rt.track_generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            if rt.default:
                rt.default(obj, None)
            if rt.status_enabled(version) and rt.resource not in ("pods", "services", "namespaces"):
                obj.pop("status", None)
            self._validate(rt, obj, None, version)
            self._check_namespace(rt, ns, name)
            if (ns or "", name) in self.objects[rt.gr]:
                raise err_already_exists(rt, name)
            self._manager_update(rt, obj, None, manager, "", version)
            if dry_run:
                return obj
            return self._commit(rt, "ADDED", ns, name, None, obj)

    def update(self, rt, ns, name, obj, version=None, subresource="", manager=None, dry_run=False,
               precondition_rv=None, internal=False):
        """PUT semantics.  precondition_rv is used by patches that carried a resourceVersion."""
        with self.lock:
            obj = copy.deepcopy(obj)
            self._prepare(rt, obj, version)
            meta = obj["metadata"]
            if meta.get("name") and meta["name"] != name:
                raise err_bad_request(f"the name of the object ({meta['name']}) does not match the name on the "
                                      f"URL ({name})")
            meta["name"] = name
            if rt.namespaced:
                if meta.get("namespace") and meta["namespace"] != ns:
                    raise err_bad_request("the namespace of the provided object does not match the namespace "
                                          "sent on the request")
                meta["namespace"] = ns
            old = self.objects[rt.gr].get((ns or "", name))
            rv = meta.get("resourceVersion")
            if rv not in (None, ""):
                try:
                    int(rv)
                except (TypeError, ValueError):
                    raise err_bad_request(f"invalid resourceVersion {rv!r}")
            if old is None:
                if not rt.create_on_update or subresource:
                    raise err_not_found(rt, name)
                meta.pop("resourceVersion", None)
                return self.create(rt, ns, obj, version, manager, dry_run)
            if meta.get("uid") and meta["uid"] != old["metadata"]["uid"]:
                raise err_conflict(rt, name, f"Precondition failed: UID in precondition: {meta['uid']}, UID in "
                                             f"object meta: {old['metadata']['uid']}")
            if rv in (None, ""):
                if not rt.unconditional_update and not internal:
                    raise err_invalid(rt, name, [("metadata.resourceVersion", "Invalid value: 0x0",
                                                  "must be specified for an update")])
            elif str(rv) != old["metadata"]["resourceVersion"]:
                raise err_conflict(rt, name)
            if precondition_rv not in (None, "") and str(precondition_rv) != old["metadata"]["resourceVersion"]:
                raise err_conflict(rt, name)
            new = self._merge_update(rt, old, obj, version, subresource)
            self._validate(rt, new, old, version)
            self._manager_update(rt, new, old, manager, subresource, version)
            return self._finish_update(rt, ns, name, old, new, version, dry_run)

    def _merge_update(self, rt, old, obj, version, subresource):
        meta = obj["metadata"]
        ometa = old["metadata"]
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                  "managedFields"):
            if f in ometa:
                meta[f] = copy.deepcopy(ometa[f])
            else:
                meta.pop(f, None)
        if rt.status_enabled(version):
            if subresource == "status":
                new = copy.deepcopy(old)
                if "status" in obj:
                    new["status"] = obj["status"]
                else:
                    new.pop("status", None)
                return new
            if "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
            else:
                obj.pop("status", None)
        if rt.default:
            rt.default(obj, old)
        return obj

    def _finish_update(self, rt, ns, name, old, new, version, dry_run):
        """Generation bump, no-op detection, finalizer-driven deletion; lock held."""
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if rt.track_generation and strip_meta_status(new, rt.status_enabled(version)) != \
                strip_meta_status(old, rt.status_enabled(version)):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if new == old:
            return old
        if dry_run:
            return new
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if rt.resource != "namespaces" or not deep_get(new, ("spec", "finalizers")):
                return self._commit(rt, "DELETED", ns, name, new, None)
        return self._commit(rt, "MODIFIED", ns, name, old, new)

    def patch(self, rt, ns, name, ctype, body, version=None, subresource="", manager=None, force=False,
              dry_run=False):
        with self.lock:
            old = self.objects[rt.gr].get((ns or "", name))
            if ctype == "application/apply-patch+yaml":
                return self.apply(rt, ns, name, body, version, subresource, manager, force, dry_run)
            if old is None:
                raise err_not_found(rt, name)
            cur = copy.deepcopy(old)
            if rt.is_custom:
                cur["apiVersion"] = rt.api_version(version)
            if ctype == "application/merge-patch+json":
                if not isinstance(body, dict):
                    raise err_bad_request("json: cannot unmarshal into Go value of type map[string]interface {}")
                new = merge_patch(cur, body)
            elif ctype == "application/strategic-merge-patch+json":
                if rt.is_custom:
                    raise ApiError(415, "the body of the request was in an unknown format - accepted media types "
                                        "include: application/json-patch+json, application/merge-patch+json, "
                                        "application/apply-patch+yaml", "UnsupportedMediaType")
                if not isinstance(body, dict):
                    raise err_bad_request("json: cannot unmarshal into Go value of type map[string]interface {}")
                new = strategic_merge_patch(cur, body)
            elif ctype == "application/json-patch+json":
                new = json_patch(cur, body)
            else:
                raise ApiError(415, f"the body of the request was in an unknown format - accepted media types "
                                    f"include: application/json-patch+json, application/merge-patch+json, "
                                    f"application/apply-patch+yaml", "UnsupportedMediaType")
            if not isinstance(new, dict):
                raise err_bad_request("patched object is not an object")
            new.setdefault("metadata", {})
            prv = new["metadata"].get("resourceVersion")
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if prv not in (None, "") and prv != old["metadata"]["resourceVersion"]:
                raise err_conflict(rt, name)
            return self.update(rt, ns, name, new, version, subresource, manager, dry_run)

    def apply(self, rt, ns, name, applied, version=None, subresource="", manager=None, force=False,
              dry_run=False):
        with self.lock:
            if not manager:
                raise err_invalid(rt, name, [("metadata.managedFields.manager", "Required value",
                                              "is required for apply patch")])
            if not isinstance(applied, dict):
                raise err_bad_request("error decoding YAML: the applied configuration is not an object")
            if not applied.get("kind") or not applied.get("apiVersion"):
                raise err_bad_request(f"invalid object type: {applied.get('apiVersion', '')}, "
                                      f"Kind={applied.get('kind', '')}")
            applied = copy.deepcopy(applied)
            self._prepare(rt, applied, version)
            ameta = applied["metadata"]
            if ameta.get("name") not in (None, "", name):
                raise err_bad_request(f"the name of the object ({ameta['name']}) does not match the name on the "
                                      f"URL ({name})")
            if rt.namespaced and ameta.get("namespace") not in (None, "", ns):
                raise err_bad_request("the namespace of the provided object does not match the namespace sent "
                                      "on the request")
            ameta["name"] = name
            if rt.namespaced:
                ameta["namespace"] = ns
            prv = ameta.pop("resourceVersion", None)
            ameta.pop("managedFields", None)
            old = self.objects[rt.gr].get((ns or "", name))
            if rt.status_enabled(version) and subresource != "status":
                applied.pop("status", None)
            paths = owned_paths(applied, subresource)
            if old is None:
                if subresource:
                    raise err_not_found(rt, name)
                if prv not in (None, ""):
                    raise err_conflict(rt, name)
                obj = copy.deepcopy(applied)
                new = self.create(rt, ns, obj, version, manager, dry_run=True)
                mf = ManagedFields(None, rt.api_version(version))
                e = mf.entry(manager, "Apply", "")
                e["paths"] = paths
                e["time"] = now_rfc3339()
                new["metadata"]["managedFields"] = mf.render()
                if dry_run:
                    return new
                return self._commit(rt, "ADDED", ns, name, None, new)
            if prv not in (None, "") and prv != old["metadata"]["resourceVersion"]:
                raise err_conflict(rt, name)
            mf = ManagedFields(old["metadata"].get("managedFields"), rt.api_version(version))
            mine = mf.entry(manager, "Apply", subresource)
            prev = set(mine["paths"])
            base = copy.deepcopy(old)
            others = [e for e in mf.entries if e is not mine]
            for p in prev - paths:
                if not any(related(p, q) for e in others for q in e["paths"]) and \
                        not any(related(p, q) for q in paths):
                    delete_path(base, p)
            new = apply_merge(base, {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")})
            new["apiVersion"], new["kind"] = applied["apiVersion"], applied["kind"]
            conflicts = []
            for e in others:
                for q in sorted(e["paths"]):
                    if any(related(p, q) for p in paths):
                        deeper = max([q] + [p for p in paths if related(p, q)], key=len)
                        if get_path(new, deeper) != get_path(old, deeper) or get_path(new, q) != get_path(old, q):
                            conflicts.append((e, q))
            if conflicts and not force:
                fields = [(e["manager"], "." + ".".join(q)) for e, q in conflicts]
                if len(fields) == 1:
                    msg = f'Apply failed with 1 conflict: conflict with "{fields[0][0]}": {fields[0][1]}'
                else:
                    msg = f"Apply failed with {len(fields)} conflicts: " + "\n".join(
                        f'conflict with "{m}": {f}' for m, f in fields)
                det = _details(rt, name)
                det["causes"] = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}"',
                                  "field": f} for m, f in fields]
                raise ApiError(409, msg, "Conflict", det)
            for e, q in conflicts:
                e["paths"].discard(q)
            for e in others:
                if force:
                    e["paths"] = {q for q in e["paths"] if not any(related(p, q) for p in paths)
                                  or get_path(new, q) == get_path(old, q)}
            if mine["paths"] != paths or mine["time"] is None:
                mine["time"] = now_rfc3339()
            mine["paths"] = paths
            mf._prune()
            new = self._merge_update(rt, old, new, version, subresource)
            self._validate(rt, new, old, version)
            rendered = mf.render()
            new["metadata"]["managedFields"] = rendered
            if strip_mf_time(new) == strip_mf_time(old):
                return old
            return self._finish_update(rt, ns, name, old, new, version, dry_run)

    def delete(self, rt, ns, name, options=None, dry_run=False):
        options = options or {}
        with self.lock:
            old = self.objects[rt.gr].get((ns or "", name))
            if old is None:
                raise err_not_found(rt, name)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise err_conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                                             f"object meta: {old['metadata']['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise err_conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: "
                                             f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                             f"{old['metadata']['resourceVersion']}")
            policy = options.get("propagationPolicy")
            if dry_run:
                return old
            if rt.gr == ("", "namespaces") or old["metadata"].get("finalizers") or policy == "Foreground":
                if old["metadata"].get("deletionTimestamp"):
                    return old
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if rt.gr == ("", "namespaces"):
                    new["status"] = {"phase": "Terminating"}
                elif policy == "Foreground":
                    new["metadata"]["finalizers"] = (new["metadata"].get("finalizers") or []) + ["foregroundDeletion"]
                obj = self._commit(rt, "MODIFIED", ns, name, old, new)
                return obj
            return self._commit(rt, "DELETED", ns, name, old, None, orphan=policy == "Orphan")

    # -- logs -------------------------------------------------------------------
    def append_log(self, ns, pod, data):
        with self.lock:
            self.logs.setdefault((ns, pod), bytearray()).extend(data)
            self.hub.cond.notify_all()


def strip_mf_time(obj):
    o = copy.deepcopy(obj)
    for e in deep_get(o, ("metadata", "managedFields")) or []:
        e.pop("time", None)
    o.get("metadata", {}).pop("resourceVersion", None)
    return o


# ---------------------------------------------------------------------------
# Workload simulator (controllers)
# ---------------------------------------------------------------------------

class Simulator:
    """Reacts to store events on a worker thread: CRD establishment, namespace termination, garbage
    collection, Deployments/ReplicaSets/StatefulSets/Jobs -> Pods, pod start-up."""

    POD_START = 0.15
    JOB_RUN = 0.3

    def __init__(self, store):
        self.store = store
        self.queue = queue.Queue()
        self.timers = []           # heap of (time, seq, fn)
        self.seq = itertools.count()
        self.tlock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="simulator", daemon=True)
        store.listeners.append(self._on_event)
        self.T = {gr: store.by_gr[gr] for gr in store.by_gr}

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped = True
        self.queue.put(None)

    def later(self, delay, fn):
        with self.tlock:
            heapq.heappush(self.timers, (time.monotonic() + delay, next(self.seq), fn))
        self.queue.put(lambda: None)  # wake up

    def _on_event(self, ev):
        self.queue.put(ev)

    def _run(self):
        while not self.stopped:
            with self.tlock:
                timeout = max(0.0, self.timers[0][0] - time.monotonic()) if self.timers else None
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                item = lambda: None  # noqa: E731
            if item is None:
                return
            due = []
            with self.tlock:
                while self.timers and self.timers[0][0] <= time.monotonic():
                    due.append(heapq.heappop(self.timers)[2])
            for fn in ([item] if callable(item) else []) + due:
                self._safe(fn)
            if isinstance(item, dict):
                self._safe(lambda: self._handle(item))

    def _safe(self, fn):
        try:
            fn()
        except ApiError:
            pass
        except Exception as e:  # keep the controller alive
            print(f"simulator error: {e!r}", file=sys.stderr, flush=True)

    def rt(self, group, resource):
        return self.store.by_gr.get((group, resource))

    # -- dispatch -------------------------------------------------------------------
    def _handle(self, ev):
        gr, etype, obj = ev["gr"], ev["type"], ev["obj"]
        if etype == "DELETED" and not ev.get("orphan"):
            self._garbage_collect(obj)
        if etype == "MODIFIED" and obj["metadata"].get("deletionTimestamp") and \
                "foregroundDeletion" in (obj["metadata"].get("finalizers") or []):
            self._foreground(ev)
        if gr == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._crd(ev)
        elif gr == ("", "namespaces"):
            if etype == "MODIFIED" and obj["metadata"].get("deletionTimestamp") and \
                    not (ev["old"] or {}).get("metadata", {}).get("deletionTimestamp"):
                self.later(0.1, lambda: self._terminate_namespace(obj["metadata"]["name"]))
        elif gr == ("apps", "deployments") and etype != "DELETED":
            self._deployment(ev["ns"], ev["name"])
        elif gr == ("apps", "replicasets"):
            if etype != "DELETED":
                self._replicaset(ev["ns"], ev["name"])
        elif gr == ("apps", "statefulsets") and etype != "DELETED":
            self._statefulset(ev["ns"], ev["name"])
        elif gr == ("batch", "jobs") and etype != "DELETED":
            self._job(ev["ns"], ev["name"])
        elif gr == ("", "pods"):
            if etype == "ADDED":
                ns, pname, uid = ev["ns"], ev["name"], obj["metadata"]["uid"]
                self.later(self.POD_START, lambda: self._start_pod(ns, pname, uid))
            for ref in obj["metadata"].get("ownerReferences") or []:
                if ref.get("controller"):
                    kind = ref.get("kind")
                    if kind == "ReplicaSet":
                        self._replicaset(ev["ns"], ref["name"])
                    elif kind == "StatefulSet":
                        self._statefulset(ev["ns"], ref["name"])
                    elif kind == "Job":
                        self._job(ev["ns"], ref["name"])
            if etype == "DELETED":
                with self.store.lock:
                    self.store.hub.cond.notify_all()  # wake log followers

    def _foreground(self, ev):
        """Foreground deletion: dependents go first, then the owner's finalizer is removed."""
        self._garbage_collect(ev["obj"])
        rt = self.store.by_gr.get(ev["gr"])
        with self.store.lock:
            cur = self.store.get_obj(rt, ev["ns"] or None, ev["name"])
            if cur is None or cur["metadata"]["uid"] != ev["obj"]["metadata"]["uid"]:
                return
            new = copy.deepcopy(cur)
            new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or []
                                             if f != "foregroundDeletion"]
            self.store.update(rt, ev["ns"] or None, ev["name"], new, manager="kube-controller-manager",
                              internal=True)

    def _garbage_collect(self, owner):
        uid = owner["metadata"].get("uid")
        ns = owner["metadata"].get("namespace")
        with self.store.lock:
            victims = []
            for gr, objs in self.store.objects.items():
                for (ons, oname), o in objs.items():
                    refs = o["metadata"].get("ownerReferences") or []
                    if any(r.get("uid") == uid for r in refs) and (ns is None or ons == ns):
                        victims.append((gr, ons, oname))
            for gr, ons, oname in victims:
                rt = self.store.by_gr.get(gr)
                if rt and (ons, oname) in self.store.objects[gr]:
                    self._safe(lambda: self.store.delete(rt, ons or None, oname,
                                                         {"propagationPolicy": "Background"}))

    # -- CRDs and namespaces ------------------------------------------------------
    def _crd(self, ev):
        crd = ev["obj"]
        name = crd["metadata"]["name"]
        rtc = self.rt("apiextensions.k8s.io", "customresourcedefinitions")
        if ev["type"] == "DELETED" or crd["metadata"].get("deletionTimestamp"):
            group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
            with self.store.lock:
                cur = self.store.by_gr.get((group, plural))
                if cur is not None and cur.crd_name == name:
                    for (ons, oname) in list(self.store.objects.get((group, plural), {})):
                        self._safe(lambda: self.store.delete(cur, ons or None, oname))
                    self.store.unregister((group, plural))
                if ev["type"] != "DELETED":
                    fresh = self.store.get_obj(rtc, None, name)
                    if fresh is not None:
                        new = copy.deepcopy(fresh)
                        new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or []
                                                         if f != "customresourcecleanup.apiextensions.k8s.io"]
                        self.store.update(rtc, None, name, new, internal=True, manager="apiextensions")
            return
        established = any(c.get("type") == "Established" and c.get("status") == "True"
                          for c in deep_get(crd, ("status", "conditions")) or [])
        if established:
            with self.store.lock:
                cur = self.store.get_obj(rtc, None, name)
                if cur is not None and cur["metadata"]["uid"] == crd["metadata"]["uid"]:
                    self.store.register(crd_resource_type(cur))
            return
        if ev["type"] == "ADDED":
            self.later(random.uniform(0.1, 0.3), lambda: self._establish(name, crd["metadata"]["uid"]))

    def _establish(self, name, uid):
        rtc = self.rt("apiextensions.k8s.io", "customresourcedefinitions")
        with self.store.lock:
            cur = self.store.get_obj(rtc, None, name)
            if cur is None or cur["metadata"]["uid"] != uid:
                return
            new = copy.deepcopy(cur)
            names = cur["spec"]["names"]
            ts = now_rfc3339()
            new["status"] = {
                "acceptedNames": {"plural": names["plural"], "singular": names.get("singular") or
                                  names["kind"].lower(), "kind": names["kind"],
                                  "listKind": names.get("listKind") or names["kind"] + "List",
                                  **({"shortNames": names["shortNames"]} if names.get("shortNames") else {}),
                                  **({"categories": names["categories"]} if names.get("categories") else {})},
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "lastTransitionTime": ts, "reason": "NoConflicts",
                     "message": "no conflicts found"},
                    {"type": "Established", "status": "True", "lastTransitionTime": ts,
                     "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}],
                "storedVersions": [v["name"] for v in cur["spec"]["versions"] if v.get("storage")]}
            self.store.register(crd_resource_type(cur))
            self.store.update(rtc, None, name, new, subresource="status", manager="apiextensions")

    def _terminate_namespace(self, ns):
        nsrt = self.rt("", "namespaces")
        with self.store.lock:
            for gr, objs in self.store.objects.items():
                rt = self.store.by_gr.get(gr)
                if rt is None or not rt.namespaced:
                    continue
                for (ons, oname) in [k for k in objs if k[0] == ns]:
                    self._safe(lambda: self.store._commit(rt, "DELETED", ons, oname, objs[(ons, oname)], None))
            cur = self.store.get_obj(nsrt, None, ns)
            if cur is not None and cur["metadata"].get("deletionTimestamp"):
                self.store._commit(nsrt, "DELETED", None, ns, cur, None)

    # -- pods -------------------------------------------------------------------------
    def _new_pod(self, owner, owner_rt, name, template, extra_labels):
        pod_rt = self.rt("", "pods")
        tmeta = copy.deepcopy(template.get("metadata") or {})
        labels = dict(tmeta.get("labels") or {})
        labels.update(extra_labels)
        meta = {"name": name, "labels": labels,
                "ownerReferences": [{"apiVersion": owner_rt.api_version(), "kind": owner_rt.kind,
                                     "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                     "controller": True, "blockOwnerDeletion": True}]}
        if tmeta.get("annotations"):
            meta["annotations"] = tmeta["annotations"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}
        return self.store.create(pod_rt, owner["metadata"]["namespace"], pod, manager="kube-controller-manager")

    @staticmethod
    def _images(pod):
        return [str(c.get("image", "")) for c in deep_get(pod, ("spec", "containers")) or []]

    def _start_pod(self, ns, name, uid):
        pod_rt = self.rt("", "pods")
        with self.store.lock:
            pod = self.store.get_obj(pod_rt, ns, name)
            if pod is None or pod["metadata"]["uid"] != uid or pod["metadata"].get("deletionTimestamp"):
                return
            if not deep_get(pod, ("spec", "nodeName")):
                bound = copy.deepcopy(pod)
                bound["spec"]["nodeName"] = "fake-node"
                pod = self.store.update(pod_rt, ns, name, bound, manager="kube-scheduler", internal=True)
            new = copy.deepcopy(pod)
            ts = now_rfc3339()
            n = int(hashlib.sha1(uid.encode()).hexdigest()[:4], 16)
            st = {"phase": "Running", "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}],
                  "podIP": f"10.244.{n // 250 % 250}.{n % 250 + 2}", "startTime": ts, "qosClass": "BestEffort"}
            st["podIPs"] = [{"ip": st["podIP"]}]
            statuses = []
            ready = True
            pull_fail = crash = False
            for c in deep_get(pod, ("spec", "containers")) or []:
                img = str(c.get("image", ""))
                cs = {"name": c.get("name"), "image": img, "imageID": "", "ready": False, "restartCount": 0,
                      "started": False}
                if "fail-pull" in img:
                    pull_fail = True
                    cs["state"] = {"waiting": {"reason": "ErrImagePull",
                                               "message": f'failed to pull and unpack image "{img}": not found'}}
                elif "crashloop" in img:
                    crash = True
                    cs["restartCount"] = 3
                    cs["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                               "message": f"back-off 40s restarting failed container={c.get('name')} "
                                                          f"pod={name}_{ns}"}}
                    cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ts,
                                                      "finishedAt": ts, "containerID": "containerd://" + uid}}
                else:
                    cs.update({"ready": True, "started": True, "imageID": f"{img}@sha256:" +
                               hashlib.sha256(img.encode()).hexdigest(), "containerID": "containerd://" +
                               hashlib.sha1((uid + c.get("name", "")).encode()).hexdigest(),
                               "state": {"running": {"startedAt": ts}}})
                    continue
                ready = False
                statuses.append(cs)
            statuses = [s for s in statuses] + [
                {"name": c.get("name"), "image": c.get("image"), "imageID": f"{c.get('image')}@sha256:" +
                 hashlib.sha256(str(c.get("image")).encode()).hexdigest(), "ready": True, "started": True,
                 "restartCount": 0, "containerID": "containerd://" + hashlib.sha1((uid + str(c.get("name"))).encode())
                 .hexdigest(), "state": {"running": {"startedAt": ts}}}
                for c in deep_get(pod, ("spec", "containers")) or []
                if "fail-pull" not in str(c.get("image", "")) and "crashloop" not in str(c.get("image", ""))]
            order = [c.get("name") for c in deep_get(pod, ("spec", "containers")) or []]
            statuses.sort(key=lambda s: order.index(s["name"]) if s["name"] in order else 0)
            if pull_fail:
                st["phase"] = "Pending"
            ready_s = "True" if ready else "False"
            st["conditions"] = [
                {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": ts},
                {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts},
                {"type": "Ready", "status": ready_s, "lastProbeTime": None, "lastTransitionTime": ts,
                 **({} if ready else {"reason": "ContainersNotReady",
                                      "message": "containers with unready status: [" +
                                      " ".join(s["name"] for s in statuses if not s["ready"]) + "]"})},
                {"type": "ContainersReady", "status": ready_s, "lastProbeTime": None, "lastTransitionTime": ts,
                 **({} if ready else {"reason": "ContainersNotReady"})},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}]
            st["containerStatuses"] = statuses
            new["status"] = st
            self.store.update(pod_rt, ns, name, new, subresource="status", manager="kubelet")
            owner = next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("kind") == "Job"), None)
            if owner and not pull_fail:
                self.later(self.JOB_RUN, lambda: self._finish_job_pod(ns, name, uid, not crash))

    def _finish_job_pod(self, ns, name, uid, success):
        pod_rt = self.rt("", "pods")
        with self.store.lock:
            pod = self.store.get_obj(pod_rt, ns, name)
            if pod is None or pod["metadata"]["uid"] != uid:
                return
            new = copy.deepcopy(pod)
            ts = now_rfc3339()
            st = new.setdefault("status", {})
            st["phase"] = "Succeeded" if success else "Failed"
            for cs in st.get("containerStatuses") or []:
                cs["ready"] = False
                cs["started"] = False
                cs["state"] = {"terminated": {"exitCode": 0 if success else 1,
                                              "reason": "Completed" if success else "Error",
                                              "startedAt": ts, "finishedAt": ts,
                                              "containerID": cs.get("containerID", "")}}
            for c in st.get("conditions") or []:
                if c["type"] in ("Ready", "ContainersReady"):
                    c.update({"status": "False", "reason": "PodCompleted" if success else "PodFailed",
                              "lastTransitionTime": ts})
            self.store.update(pod_rt, ns, name, new, subresource="status", manager="kubelet")

    def _owned_pods(self, owner):
        pod_rt = self.rt("", "pods")
        items, _ = self.store.list_objs(pod_rt, owner["metadata"]["namespace"])
        uid = owner["metadata"]["uid"]
        return [p for p in items if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
                and not p["metadata"].get("deletionTimestamp")]

    @staticmethod
    def _pod_ready(p):
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in deep_get(p, ("status", "conditions")) or [])

    def _set_status(self, rt, obj, status):
        if obj.get("status") == status:
            return
        new = copy.deepcopy(obj)
        new["status"] = status
        self.store.update(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"], new,
                          subresource="status", manager="kube-controller-manager")

    # -- deployments ------------------------------------------------------------------
    @staticmethod
    def template_hash(template):
        h = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
        return "".join(RAND_CHARS[b % len(RAND_CHARS)] for b in h[:10])

    def _deployment(self, ns, name):
        drt, rsrt = self.rt("apps", "deployments"), self.rt("apps", "replicasets")
        with self.store.lock:
            d = self.store.get_obj(drt, ns, name)
            if d is None or d["metadata"].get("deletionTimestamp"):
                return
            spec = d["spec"]
            template = copy.deepcopy(spec.get("template") or {})
            h = self.template_hash(template)
            rs_name = f"{name}-{h}"
            replicas = spec.get("replicas", 1)
            all_rs, _ = self.store.list_objs(rsrt, ns)
            owned = [r for r in all_rs if any(o.get("uid") == d["metadata"]["uid"]
                                              for o in r["metadata"].get("ownerReferences") or [])]
            cur = next((r for r in owned if r["metadata"]["name"] == rs_name), None)
            revision = str(max([int((r["metadata"].get("annotations") or {}).get(
                "deployment.kubernetes.io/revision", "0")) for r in owned] + [0]) + (0 if cur else 1))
            if cur is None:
                tmpl = copy.deepcopy(template)
                tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
                sel = copy.deepcopy(spec.get("selector") or {})
                sel.setdefault("matchLabels", {})["pod-template-hash"] = h
                rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                      "metadata": {"name": rs_name, "labels": dict(tmpl["metadata"]["labels"]),
                                   "annotations": {"deployment.kubernetes.io/revision": revision,
                                                   "deployment.kubernetes.io/desired-replicas": str(replicas)},
                                   "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                                        "uid": d["metadata"]["uid"], "controller": True,
                                                        "blockOwnerDeletion": True}]},
                      "spec": {"replicas": replicas, "selector": sel, "template": tmpl}}
                self.store.create(rsrt, ns, rs, manager="kube-controller-manager")
            elif cur["spec"].get("replicas") != replicas:
                new = copy.deepcopy(cur)
                new["spec"]["replicas"] = replicas
                self.store.update(rsrt, ns, rs_name, new, manager="kube-controller-manager")
            for r in owned:
                if r["metadata"]["name"] != rs_name and r["spec"].get("replicas", 0) != 0:
                    new = copy.deepcopy(r)
                    new["spec"]["replicas"] = 0
                    self.store.update(rsrt, ns, r["metadata"]["name"], new, manager="kube-controller-manager")
            self._deployment_status(ns, name)

    def _deployment_status(self, ns, name):
        drt, rsrt = self.rt("apps", "deployments"), self.rt("apps", "replicasets")
        with self.store.lock:
            d = self.store.get_obj(drt, ns, name)
            if d is None:
                return
            h = self.template_hash(d["spec"].get("template") or {})
            all_rs, _ = self.store.list_objs(rsrt, ns)
            owned = [r for r in all_rs if any(o.get("uid") == d["metadata"]["uid"]
                                              for o in r["metadata"].get("ownerReferences") or [])]
            pods = [p for r in owned for p in self._owned_pods(r)]
            new_pods = [p for p in pods if (p["metadata"].get("labels") or {}).get("pod-template-hash") == h]
            ready = [p for p in pods if self._pod_ready(p)]
            desired = d["spec"].get("replicas", 1)
            old_status = d.get("status") or {}
            st = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": len(pods),
                  "updatedReplicas": len(new_pods)}
            if ready:
                st["readyReplicas"] = len(ready)
                st["availableReplicas"] = len(ready)
            if len(pods) - len(ready) > 0 or desired > len(ready):
                st["unavailableReplicas"] = max(len(pods), desired) - len(ready)
            st = {k: v for k, v in st.items() if v or k == "observedGeneration"}
            ts = now_rfc3339()
            prev = {c["type"]: c for c in old_status.get("conditions") or []}

            def cond(ctype, status, reason, message):
                p = prev.get(ctype)
                c = {"type": ctype, "status": status, "lastUpdateTime": ts,
                     "lastTransitionTime": p["lastTransitionTime"] if p and p["status"] == status else ts,
                     "reason": reason, "message": message}
                if p and p["status"] == status and p["reason"] == reason and p["message"] == message:
                    c["lastUpdateTime"] = p["lastUpdateTime"]
                return c

            done = len(new_pods) == desired and len(pods) == desired and len([p for p in new_pods
                                                                              if self._pod_ready(p)]) == desired
            avail = len(ready) >= desired
            conds = [cond("Available", "True" if avail else "False",
                          "MinimumReplicasAvailable" if avail else "MinimumReplicasUnavailable",
                          "Deployment has minimum availability." if avail
                          else "Deployment does not have minimum availability."),
                     cond("Progressing", "True", "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
                          f'ReplicaSet "{d["metadata"]["name"]}-{h}" ' +
                          ("has successfully progressed." if done else "is progressing."))]
            st["conditions"] = conds
            self._set_status(drt, d, st)

    def _replicaset(self, ns, name):
        rsrt, pod_rt = self.rt("apps", "replicasets"), self.rt("", "pods")
        with self.store.lock:
            rs = self.store.get_obj(rsrt, ns, name)
            if rs is None:
                return
            pods = self._owned_pods(rs)
            want = rs["spec"].get("replicas", 1)
            if not rs["metadata"].get("deletionTimestamp"):
                for _ in range(want - len(pods)):
                    self._new_pod(rs, rsrt, f"{name}-{rand5()}", rs["spec"].get("template") or {}, {})
                if len(pods) > want:
                    for p in sorted(pods, key=lambda p: (self._pod_ready(p), p["metadata"]["creationTimestamp"]))[
                            :len(pods) - want]:
                        self.store.delete(pod_rt, ns, p["metadata"]["name"])
            pods = self._owned_pods(rs)
            ready = [p for p in pods if self._pod_ready(p)]
            st = {"replicas": len(pods), "observedGeneration": rs["metadata"].get("generation", 1)}
            if pods:
                st["fullyLabeledReplicas"] = len(pods)
            if ready:
                st["readyReplicas"] = len(ready)
                st["availableReplicas"] = len(ready)
            self._set_status(rsrt, rs, st)
            for ref in rs["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Deployment":
                    self._deployment_status(ns, ref["name"])

    def _statefulset(self, ns, name):
        srt, pod_rt = self.rt("apps", "statefulsets"), self.rt("", "pods")
        with self.store.lock:
            s = self.store.get_obj(srt, ns, name)
            if s is None or s["metadata"].get("deletionTimestamp"):
                return
            want = s["spec"].get("replicas", 1)
            h = self.template_hash(s["spec"].get("template") or {})
            revision = f"{name}-{h}"
            pods = {p["metadata"]["name"]: p for p in self._owned_pods(s)}
            for i in range(want):
                pname = f"{name}-{i}"
                p = pods.get(pname)
                if p is not None and (p["metadata"].get("labels") or {}).get("controller-revision-hash") != revision:
                    self.store.delete(pod_rt, ns, pname)
                    p = None
                if p is None and self.store.get_obj(pod_rt, ns, pname) is None:
                    self._new_pod(s, srt, pname, s["spec"].get("template") or {},
                                  {"controller-revision-hash": revision, "statefulset.kubernetes.io/pod-name": pname,
                                   "apps.kubernetes.io/pod-index": str(i)})
            for pname in pods:
                if int(pname.rsplit("-", 1)[1]) >= want:
                    self.store.delete(pod_rt, ns, pname)
            pods = self._owned_pods(s)
            ready = [p for p in pods if self._pod_ready(p)]
            st = {"observedGeneration": s["metadata"].get("generation", 1), "replicas": len(pods),
                  "currentRevision": revision, "updateRevision": revision, "collisionCount": 0,
                  "currentReplicas": len(pods), "updatedReplicas": len(pods)}
            if ready:
                st["readyReplicas"] = len(ready)
                st["availableReplicas"] = len(ready)
            self._set_status(srt, s, st)

    def _job(self, ns, name):
        jrt = self.rt("batch", "jobs")
        with self.store.lock:
            j = self.store.get_obj(jrt, ns, name)
            if j is None or j["metadata"].get("deletionTimestamp"):
                return
            spec = j["spec"]
            st = copy.deepcopy(j.get("status") or {})
            if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                   for c in st.get("conditions") or []):
                return
            pods = self._owned_pods(j)
            succeeded = sum(1 for p in pods if deep_get(p, ("status", "phase")) == "Succeeded")
            failed = sum(1 for p in pods if deep_get(p, ("status", "phase")) == "Failed")
            active = [p for p in pods if deep_get(p, ("status", "phase")) not in ("Succeeded", "Failed")]
            completions = spec.get("completions") or 1
            ts = now_rfc3339()
            st.setdefault("startTime", ts)
            if succeeded >= completions:
                st.update({"succeeded": succeeded, "completionTime": ts,
                           "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": ts,
                                           "lastTransitionTime": ts, "reason": "CompletionsReached",
                                           "message": "Reached expected number of succeeded pods"},
                                          {"type": "Complete", "status": "True", "lastProbeTime": ts,
                                           "lastTransitionTime": ts, "reason": "CompletionsReached",
                                           "message": "Reached expected number of succeeded pods"}]})
                st.pop("active", None)
            elif failed > spec.get("backoffLimit", 6):
                st.update({"failed": failed, "conditions": [
                    {"type": "FailureTarget", "status": "True", "lastProbeTime": ts, "lastTransitionTime": ts,
                     "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"},
                    {"type": "Failed", "status": "True", "lastProbeTime": ts, "lastTransitionTime": ts,
                     "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
                st.pop("active", None)
            elif not spec.get("suspend"):
                want = min(spec.get("parallelism", 1), completions - succeeded)
                for _ in range(want - len(active)):
                    self._new_pod(j, jrt, f"{name}-{rand5()}", spec.get("template") or {}, {})
                active = [p for p in self._owned_pods(j)
                          if deep_get(p, ("status", "phase")) not in ("Succeeded", "Failed")]
                if active:
                    st["active"] = len(active)
                ready = sum(1 for p in active if self._pod_ready(p))
                st["ready"] = ready
                if succeeded:
                    st["succeeded"] = succeeded
                if failed:
                    st["failed"] = failed
            st.setdefault("uncountedTerminatedPods", {})
            if spec.get("suspend"):
                return
            self._set_status(jrt, j, st)


# ---------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------

class StreamEnd(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY each
    # kept-alive request would stall ~40 ms on Nagle + delayed ACK.
    disable_nagle_algorithm = True
    server_version = "fake-kube-apiserver"
    timeout = 600

    # -- plumbing -----------------------------------------------------------------
    def setup(self):
        ctx = self.server.fake.ssl_context
        if ctx is not None:
            self.request.settimeout(10)
            try:
                self.request = ctx.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()

    def _drop_connection(self):
        """End the connection without an answer, as a server that died mid-request would."""
        self.close_connection = True
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("fake-kube: " + (fmt % args) + "\n")

    @property
    def fake(self):
        return self.server.fake

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            return bytes(data)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code, body, ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            data = (dumps(body) + "\n").encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._rec["status"] = code

    def _send_error(self, e):
        self._send(e.code, e.status(), headers=e.headers)

    def _start_chunked(self, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        self._rec["status"] = 200

    def _chunk(self, data):
        if not data:
            return
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunked(self):
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _client_gone(self):
        """True if the client closed the connection (or sent something while we stream)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        if not r:
            return False
        if isinstance(self.connection, ssl.SSLSocket):
            return True
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- auth -----------------------------------------------------------------------
    def _authenticated(self):
        fake = self.fake
        if not fake.token and not fake.client_ca:
            return True
        auth = self.headers.get("Authorization", "")
        if fake.token and auth == f"Bearer {fake.token}":
            return True
        if auth:
            return False
        if fake.client_ca and isinstance(self.connection, ssl.SSLSocket):
            try:
                if self.connection.getpeercert():
                    return True
            except (ValueError, OSError):
                return False
        return False

    # -- dispatch -------------------------------------------------------------------
    def _dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        self._rec = {"method": method, "path": self.path, "content_type": ctype,
                     "user_agent": self.headers.get("User-Agent", ""), "status": None, "time": time.time()}
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            if path.startswith("/fake/"):
                return self._control(method, path, params, body)
            self.fake.record(self._rec)
            if not self._authenticated():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            injected = self.fake.injected_failure(method, self.path)
            if injected:
                if injected.delay > 0:
                    time.sleep(injected.delay)
                if injected.drop:
                    self._drop_connection()
                    return
                if injected.code:
                    raise injected
            self._route(method, path, params, ctype, body)
        except ApiError as e:
            self._send_error(e)
        except StreamEnd:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # a bug in the fake: report it as a 500 Status
            import traceback
            traceback.print_exc()
            try:
                self._send_error(ApiError(500, f"fake apiserver internal error: {e!r}", "InternalError"))
            except OSError:
                self.close_connection = True

    def _control(self, method, path, params, body):
        fake = self.fake
        parts = path.split("/")[2:]
        if method == "POST" and parts == ["compact"]:
            with fake.store.lock:
                fake.store.hub.compact(fake.store.rv)
                rv = fake.store.rv
            return self._send(200, {"compacted": str(rv)})
        if method == "POST" and parts == ["fail"]:
            def number(key, default, kind):
                try:
                    return kind(params.get(key, default))
                except ValueError:
                    raise ApiError(400, f"/fake/fail: {key}={params[key]!r} is not a number", "BadRequest")
            rule = {"count": number("count", "1", int), "code": number("code", "500", int),
                    "path_contains": params.get("path_contains", ""),
                    "method": params.get("method", "").upper(), "message": params.get("message", ""),
                    "delay": number("delay", "0", float), "drop": params.get("drop", "") in ("1", "true"),
                    "probability": number("probability", "1", float)}
            with fake.lock:
                fake.fail_rules.append(rule)
            return self._send(200, {"ok": True, "rule": rule})
        if method == "POST" and parts == ["clear-failures"]:
            with fake.lock:
                cleared = len(fake.fail_rules)
                fake.fail_rules = []
            return self._send(200, {"ok": True, "cleared": cleared})
        if method == "POST" and parts == ["reset-requests"]:
            with fake.lock:
                fake.requests.clear()
            return self._send(200, {"ok": True})
        if method == "POST" and len(parts) == 3 and parts[0] == "logs":
            ns, pod = parts[1], parts[2]
            if fake.store.get_obj(fake.store.by_gr[("", "pods")], ns, pod) is None:
                raise err_not_found(fake.store.by_gr[("", "pods")], pod)
            fake.store.append_log(ns, pod, body)
            return self._send(200, {"ok": True, "appended": len(body)})
        if method == "GET" and parts == ["requests"]:
            with fake.lock:
                reqs = list(fake.requests)
            return self._send(200, {"requests": reqs})
        raise ApiError(404, f"unknown control endpoint {method} {path}", "NotFound")

    # -- routing --------------------------------------------------------------------
    def _route(self, method, path, params, ctype, body):
        store = self.fake.store
        if path in ("/healthz", "/readyz", "/livez") or path.startswith(("/healthz/", "/readyz/", "/livez/")):
            return self._send(200, "ok", "text/plain; charset=utf-8")
        if path == "/version":
            return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake",
                                    "gitCommit": "0000000000000000000000000000000000000000",
                                    "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z",
                                    "goVersion": "go1.22.0", "compiler": "gc", "platform": "linux/amd64"})
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.server.server_address[1]}"}]})
        if path == "/apis":
            groups = store.groups()
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                self._api_group(g, vs) for g, vs in sorted(groups.items())]})
        segs = [urllib.parse.unquote(s) for s in path.split("/")[1:]]
        if segs[0] == "api" and len(segs) >= 2:
            group, version, rest = "", segs[1], segs[2:]
        elif segs[0] == "apis" and len(segs) >= 2:
            if len(segs) == 2:
                vs = store.groups().get(segs[1])
                if not vs:
                    raise ApiError(404, "the server could not find the requested resource", "NotFound")
                return self._send(200, dict(self._api_group(segs[1], vs), kind="APIGroup", apiVersion="v1"))
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if not rest:
            return self._discovery(group, version)
        watch_prefix = False
        if rest[0] == "watch":
            watch_prefix, rest = True, rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            rt = store.lookup(group, version, rest[2])
            if rt is not None and rt.namespaced:
                ns, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        rt = store.lookup(group, version, rest[0])
        if rt is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if rt.namespaced and ns is None and len(rest) > 1:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if watch_prefix:
            if method != "GET":
                raise ApiError(405, f"the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            params["watch"] = "true"
            if name:
                params["fieldSelector"] = f"metadata.name={name}"
            return self._watch(rt, ns, params, version)
        if sub:
            if sub == "log" and rt.gr == ("", "pods") and method == "GET":
                return self._pod_log(rt, ns, name, params)
            if sub == "status" and rt.status_enabled(version):
                pass
            elif sub == "finalize" and rt.gr == ("", "namespaces") and method == "PUT":
                pass
            else:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
        self._verb(method, rt, ns, name, sub, version, params, ctype, body)

    def _api_group(self, group, versions):
        return {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}

    def _discovery(self, group, version):
        store = self.fake.store
        with store.lock:
            rts = [rt for (g, v, _), rt in store.types.items() if g == group and v == version]
        if not rts:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        resources = []
        for rt in sorted(rts, key=lambda r: r.resource):
            verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            r = {"name": rt.resource, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
                 "verbs": verbs, "storageVersionHash": base64.b64encode(
                     hashlib.sha256(rt.qualified.encode()).digest()[:8]).decode()}
            if rt.short_names:
                r["shortNames"] = rt.short_names
            if rt.categories:
                r["categories"] = rt.categories
            resources.append(r)
            if rt.status_enabled(version):
                resources.append({"name": rt.resource + "/status", "singularName": "", "namespaced": rt.namespaced,
                                  "kind": rt.kind, "verbs": ["get", "patch", "update"]})
            if rt.gr == ("", "pods"):
                resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                                  "verbs": ["get"]})
        gv = f"{group}/{version}" if group else version
        return self._send(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                                "resources": resources})

    def _out(self, rt, obj, version, in_list=False):
        """The wire form of a stored object."""
        if in_list and not rt.is_custom:
            o = {}
        else:
            o = {"apiVersion": rt.api_version(version), "kind": rt.kind}
        for k, v in obj.items():
            if k not in ("apiVersion", "kind", "_orphan"):
                o[k] = v
        return o

    def _parse_body(self, rt, body, ctype, apply=False):
        if not body:
            raise err_bad_request("the body of the request was empty")
        try:
            if apply or ctype in ("application/yaml", "application/x-yaml"):
                return yaml.load(body.decode("utf-8"), Loader=_NoTimestampLoader)
            return json.loads(body)
        except (ValueError, yaml.YAMLError) as e:
            if apply:
                raise err_bad_request(f"error decoding YAML: {e}")
            raise err_decode(rt, f"json: {e}") if rt else err_bad_request(str(e))

    def _verb(self, method, rt, ns, name, sub, version, params, ctype, body):
        store = self.fake.store
        dry_run = params.get("dryRun") == "All"
        manager = params.get("fieldManager") or (self.headers.get("User-Agent") or "unknown").split("/")[0] or \
            "unknown"
        if params.get("dryRun") not in (None, "All"):
            raise err_bad_request(f"unsupported dryRun value {params['dryRun']!r}")
        if method in ("GET", "HEAD"):
            if name is None:
                if params.get("watch") in ("1", "true", "True"):
                    return self._watch(rt, ns, params, version)
                return self._list(rt, ns, params, version)
            obj = store.get_obj(rt, ns, name)
            if obj is None:
                raise err_not_found(rt, name)
            return self._send(200, self._out(rt, obj, version))
        if method == "POST":
            if name is not None:
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            if rt.namespaced and ns is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            obj = self._parse_body(rt, body, ctype)
            created = store.create(rt, ns, obj, version, params.get("fieldManager") or manager, dry_run)
            return self._send(201, self._out(rt, created, version))
        if method == "PUT":
            if name is None:
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            obj = self._parse_body(rt, body, ctype)
            with store.lock:
                existed = store.get_obj(rt, ns, name) is not None
                if sub == "finalize":
                    obj = dict(obj) if isinstance(obj, dict) else {}
                    cur = store.get_obj(rt, ns, name)
                    if cur is None:
                        raise err_not_found(rt, name)
                    new = copy.deepcopy(cur)
                    new["spec"] = obj.get("spec", {})
                    new["metadata"]["resourceVersion"] = deep_get(obj, ("metadata", "resourceVersion")) or ""
                    res = store.update(rt, ns, name, new, version, "", manager, dry_run)
                else:
                    res = store.update(rt, ns, name, obj, version, sub, manager, dry_run)
            return self._send(200 if existed else 201, self._out(rt, res, version))
        if method == "PATCH":
            if name is None:
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            apply = ctype == "application/apply-patch+yaml"
            if not apply and params.get("force"):
                raise err_bad_request("force may not be specified for non-apply patch")
            patch = self._parse_body(rt, body, ctype, apply=apply)
            with store.lock:
                existed = store.get_obj(rt, ns, name) is not None
                res = store.patch(rt, ns, name, ctype, patch, version, sub, params.get("fieldManager") if apply
                                  else manager, params.get("force") in ("true", "1"), dry_run)
            return self._send(200 if existed or not apply else 201, self._out(rt, res, version))
        if method == "DELETE":
            opts = {}
            if body:
                try:
                    opts = json.loads(body) or {}
                except ValueError:
                    raise err_bad_request("invalid DeleteOptions body")
            if params.get("propagationPolicy"):
                opts["propagationPolicy"] = params["propagationPolicy"]
            if name is None:
                return self._delete_collection(rt, ns, params, version, opts, dry_run)
            if sub:
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            res = store.delete(rt, ns, name, opts, dry_run)
            if rt.return_deleted or res["metadata"].get("deletionTimestamp"):
                return self._send(200, self._out(rt, res, version))
            det = _details(rt, name)
            det["uid"] = res["metadata"]["uid"]
            return self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                    "details": det})
        raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")

    def _selected(self, rt, ns, params):
        lsel = parse_label_selector(params.get("labelSelector", ""))
        fsel = parse_field_selector(params.get("fieldSelector", ""), rt)
        return lambda o: o is not None and (ns is None or o["metadata"].get("namespace", "") == ns) and \
            label_match(lsel, o) and field_match(fsel, o)

    def _list(self, rt, ns, params, version):
        store = self.fake.store
        match = self._selected(rt, ns, params)
        items, rv = store.list_objs(rt, ns)
        items = [o for o in items if match(o)]
        meta = {"resourceVersion": rv}
        limit = int(params.get("limit") or 0)
        cont = params.get("continue")
        if cont:
            try:
                token = json.loads(base64.b64decode(cont))
                start, meta["resourceVersion"] = tuple(token["start"]), token["rv"]
            except (ValueError, KeyError, TypeError):
                raise err_bad_request("invalid continue token")
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = base64.b64encode(dumps({"start": [last.get("namespace", ""), last["name"]],
                                                       "rv": meta["resourceVersion"]}).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return self._send(200, {"kind": rt.list_kind, "apiVersion": rt.api_version(version), "metadata": meta,
                                "items": [self._out(rt, o, version, in_list=True) for o in items]})

    def _delete_collection(self, rt, ns, params, version, opts, dry_run):
        store = self.fake.store
        match = self._selected(rt, ns, params)
        with store.lock:
            items, _ = store.list_objs(rt, ns)
            out = []
            for o in items:
                if match(o):
                    out.append(store.delete(rt, o["metadata"].get("namespace"), o["metadata"]["name"], opts,
                                            dry_run))
            rv = str(store.rv)
        return self._send(200, {"kind": rt.list_kind, "apiVersion": rt.api_version(version),
                                "metadata": {"resourceVersion": rv},
                                "items": [self._out(rt, o, version, in_list=True) for o in out]})

    # -- watch ------------------------------------------------------------------------
    def _watch(self, rt, ns, params, version):
        store, hub = self.fake.store, self.fake.store.hub
        match = self._selected(rt, ns, params)
        timeout = params.get("timeoutSeconds")
        deadline = time.monotonic() + float(timeout) if timeout not in (None, "") else None
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        rv_param = params.get("resourceVersion", "")
        if rv_param not in ("", "0"):
            try:
                start_rv = int(rv_param)
            except ValueError:
                raise err_bad_request(f'invalid resource version "{rv_param}"')
        else:
            start_rv = None
        gone = None
        initial = []
        with store.lock:
            epoch = hub.epoch
            if start_rv is None:
                items, rv = store.list_objs(rt, ns)
                initial = [o for o in items if match(o)]
                pos = int(rv)
            else:
                pos = start_rv
                if hub.events_after(pos) is None:
                    gone = (pos, hub.compacted)
        self._start_chunked("application/json")
        try:
            if gone is not None:
                self._event("ERROR", status_object(410, f"too old resource version: {gone[0]} ({gone[1]})",
                                                   "Expired"))
                return
            for o in initial:
                self._event("ADDED", self._out(rt, o, version))
            last_activity = time.monotonic()
            while True:
                with store.lock:
                    while True:
                        if hub.closed or hub.epoch != epoch:
                            return
                        evs = hub.events_after(pos)
                        if evs is None:
                            gone = (pos, hub.compacted)
                            break
                        evs = [e for e in evs if e["gr"] == rt.gr]
                        if evs or hub.history and hub.history[-1]["rv"] > pos:
                            break
                        remaining = deadline - time.monotonic() if deadline is not None else None
                        if remaining is not None and remaining <= 0:
                            return
                        hub.cond.wait(min(1.0, remaining) if remaining is not None else 1.0)
                        if self._client_gone():
                            raise StreamEnd()
                        if bookmarks and time.monotonic() - last_activity > self.fake.bookmark_interval:
                            break
                    if gone is None:
                        newest = hub.history[-1]["rv"] if hub.history else pos
                        pos = max(pos, newest)
                if gone is not None:
                    self._event("ERROR", status_object(410, f"too old resource version: {gone[0]} ({gone[1]})",
                                                       "Expired"))
                    return
                sent = False
                for e in evs:
                    old_m, new_m = match(e["old"]), match(e["obj"])
                    if e["type"] == "ADDED" and new_m:
                        self._event("ADDED", self._out(rt, e["obj"], version))
                    elif e["type"] == "DELETED" and old_m:
                        self._event("DELETED", self._out(rt, e["obj"], version))
                    elif e["type"] == "MODIFIED":
                        if old_m and new_m:
                            self._event("MODIFIED", self._out(rt, e["obj"], version))
                        elif new_m:
                            self._event("ADDED", self._out(rt, e["obj"], version))
                        elif old_m:
                            self._event("DELETED", self._out(rt, e["obj"], version))
                        else:
                            continue
                    else:
                        continue
                    sent = True
                if sent:
                    last_activity = time.monotonic()
                elif bookmarks and time.monotonic() - last_activity > self.fake.bookmark_interval:
                    self._event("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version(version),
                                             "metadata": {"resourceVersion": str(pos)}})
                    last_activity = time.monotonic()
        finally:
            self._end_chunked()

    def _event(self, etype, obj):
        self._chunk((dumps({"type": etype, "object": obj}) + "\n").encode())

    # -- pod logs -----------------------------------------------------------------------
    def _pod_log(self, rt, ns, name, params):
        store, hub = self.fake.store, self.fake.store.hub
        pod = store.get_obj(rt, ns, name)
        if pod is None:
            raise err_not_found(rt, name)
        containers = [c.get("name") for c in deep_get(pod, ("spec", "containers")) or []]
        cname = params.get("container")
        if cname is None and len(containers) > 1:
            raise err_bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                  f"[{' '.join(containers)}]")
        if cname is not None and cname not in containers:
            raise err_bad_request(f"container {cname} is not valid for pod {name}")
        cname = cname or (containers[0] if containers else "")
        cs = next((s for s in deep_get(pod, ("status", "containerStatuses")) or [] if s.get("name") == cname), None)
        waiting = deep_get(cs or {}, ("state", "waiting", "reason"))
        if cs is None or (waiting and waiting != "CrashLoopBackOff"):
            why = {"ErrImagePull": "trying and failing to pull image",
                   "ImagePullBackOff": "trying and failing to pull image"}.get(waiting, "ContainerCreating")
            raise err_bad_request(f'container "{cname}" in pod "{name}" is waiting to start: {why}')
        uid = pod["metadata"]["uid"]
        with store.lock:
            data = bytes(store.logs.get((ns, name), b""))
        tail = params.get("tailLines")
        if tail not in (None, ""):
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail):]) if int(tail) > 0 else b""
        if params.get("follow") not in ("true", "1"):
            return self._send(200, data, "text/plain")
        self._start_chunked("text/plain")
        try:
            offset = len(store.logs.get((ns, name), b""))
            self._chunk(data)
            while True:
                with store.lock:
                    while True:
                        cur = store.get_obj(rt, ns, name)
                        if hub.closed or cur is None or cur["metadata"]["uid"] != uid:
                            return
                        buf = store.logs.get((ns, name), b"")
                        if len(buf) > offset:
                            chunk = bytes(buf[offset:])
                            offset = len(buf)
                            break
                        hub.cond.wait(1.0)
                        if self._client_gone():
                            raise StreamEnd()
                self._chunk(chunk)
        finally:
            self._end_chunked()


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if self.fake.verbose:
            super().handle_error(request, client_address)


class FakeKubeApiServer:
    """The fake API server; usable in-process (start()/stop()) or through main()."""

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, client_ca=None, token=None,
                 history=1000, verbose=False, bookmark_interval=5.0, state_file=None):
        self.token = token
        self.client_ca = client_ca
        self.verbose = verbose
        self.bookmark_interval = bookmark_interval
        self.lock = threading.Lock()
        self.fail_rules = []
        self.requests = []
        self.store = Store(history)
        self.sim = Simulator(self.store)
        self.state_file = state_file
        if state_file:
            self._load_state()
            self.store.listeners.append(self._save_state)
        self.ssl_context = None
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            ctx.set_alpn_protocols(["http/1.1"])
            if client_ca:
                ctx.load_verify_locations(client_ca)
                ctx.verify_mode = ssl.CERT_OPTIONAL
            self.ssl_context = ctx
        self.httpd = _HTTPServer((host, port), Handler)
        self.httpd.fake = self
        self.thread = None

    @property
    def url(self):
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.ssl_context else 'http'}://{host}:{port}"

    def record(self, rec):
        with self.lock:
            self.requests.append(rec)
            if len(self.requests) > 1000:
                del self.requests[:len(self.requests) - 1000]

    def injected_failure(self, method, path):
        """The ApiError of the first /fake/fail rule this request triggers, or None. Its .delay
        (seconds to wait first) and .drop (close without answering) come from the rule; with
        code 0 it is only a delay."""
        with self.lock:
            for rule in self.fail_rules:
                if rule["count"] > 0 and rule["path_contains"] in path and rule["method"] in ("", method) \
                        and (rule.get("probability", 1) >= 1 or random.random() < rule["probability"]):
                    rule["count"] -= 1
                    code = rule["code"]
                    msg = rule["message"] or f"injected failure ({code})"
                    headers = {"Retry-After": "1"} if code in (429, 503) else {}
                    err = ApiError(code, msg, REASONS.get(code, "Unknown"), headers=headers)
                    err.delay = rule.get("delay", 0)
                    err.drop = rule.get("drop", False)
                    return err
            self.fail_rules = [r for r in self.fail_rules if r["count"] > 0]
        return None

    # -- --state-file: the objects survive a restart, as etcd keeps them --------------
    def _load_state(self):
        try:
            with open(self.state_file) as f:
                state = json.load(f)
        except FileNotFoundError:
            return
        store = self.store
        with store.lock:
            crd_gr = ("apiextensions.k8s.io", "customresourcedefinitions")
            entries = state["objects"]
            for e in entries:  # custom resources need their types first
                if (e["group"], e["resource"]) == crd_gr and any(
                        c.get("type") == "Established" and c.get("status") == "True"
                        for c in deep_get(e["obj"], ("status", "conditions")) or []):
                    store.register(crd_resource_type(e["obj"]))
            for objs in store.objects.values():
                objs.clear()
            for e in entries:
                gr = (e["group"], e["resource"])
                if gr in store.by_gr:
                    store.objects[gr][(e["ns"], e["name"])] = e["obj"]
            store.rv = max(store.rv, int(state["rv"]))
            store.hub.compact(store.rv)  # no history: older watches get 410 Expired

    def _save_state(self, _event):
        """Store listener (store lock held): write every object, then rename over the state
        file, so a killed server leaves the old or the new state, never a torn one."""
        store = self.store
        entries = [{"group": gr[0], "resource": gr[1], "ns": ns, "name": name, "obj": obj}
                   for gr, objs in store.objects.items() for (ns, name), obj in objs.items()]
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"rv": store.rv, "objects": entries}, f)
        os.replace(tmp, self.state_file)

    def start(self):
        self.sim.start()
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="fake-kube-http", daemon=True)
        self.thread.start()
        return self.url

    def serve_forever(self):
        self.sim.start()
        self.httpd.serve_forever(poll_interval=0.2)

    def stop(self):
        self.store.hub.close()
        self.sim.stop()
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake Kubernetes API server for tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--token")
    ap.add_argument("--history", type=int, default=1000, help="watch history size (events)")
    ap.add_argument("--bookmark-interval", type=float, default=5.0)
    ap.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (parent died)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--state-file", help="keep the objects in this file across restarts (see the module doc)")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        ap.error("--client-ca needs TLS")
    fake = FakeKubeApiServer(args.host, args.port, args.tls_cert, args.tls_key, args.client_ca, args.token,
                             args.history, args.verbose, args.bookmark_interval, args.state_file)

    def shutdown(*_):
        threading.Thread(target=fake.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    if args.exit_on_stdin_eof:
        def watch_stdin():
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            shutdown()
        threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"LISTENING {fake.url}", flush=True)
    fake.serve_forever()
    fake.store.hub.close()
    fake.httpd.server_close()
    time.sleep(0.05)  # let open streams write their last chunk
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # do not wait for (or finalize under) daemon handler threads


if __name__ == "__main__":
    sys.exit(main())
