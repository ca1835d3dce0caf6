#!/usr/bin/env python3
"""Drive a tillmesh node from Python with only the standard library (urllib + json).

    python3 examples/python/client.py --api http://127.0.0.1:7878 \
        --username olivia --password 'a long password'

(or set TILLMESH_API, TILLMESH_USERNAME, TILLMESH_PASSWORD). The login needs an owner or a
manager: the script adds products and reads the daily report.

It reads the node's OpenAPI document first (GET /api/v1/openapi.json) and refuses to call a
route the document does not list, then: logs in for a bearer token, adds two products (or
finds them by SKU), receives stock, records a sale, and prints the daily report, the stock
and the shop's Automerge documents.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


class ApiError(Exception):
    """An answer with an error status: {"error": {"code", "message", "field"}}."""

    def __init__(self, status, body):
        err = (body or {}).get("error") or {}
        self.status = status
        self.code = err.get("code")
        self.field = err.get("field")
        super().__init__(f"{status} {self.code}: {err.get('message')} (field {err.get('field')})")


class Tillmesh:
    def __init__(self, base):
        self.base = base.rstrip("/")
        self.token = None
        self.routes = set()

    def load_openapi(self):
        doc = self._send("GET", "/api/v1/openapi.json", check_route=False)
        for path, item in doc["paths"].items():
            for method in item:
                self.routes.add((method.upper(), path))
        return doc

    def _documented(self, method, path):
        """Whether METHOD PATH matches a documented route ({param} matches one segment)."""
        segs = path.split("?")[0].split("/")
        for m, template in self.routes:
            tsegs = template.split("/")
            if m == method and len(tsegs) == len(segs) and all(
                t.startswith("{") or t == s for t, s in zip(tsegs, segs)
            ):
                return True
        return False

    def _send(self, method, path, body=None, check_route=True):
        if check_route and not self._documented(method, path):
            raise RuntimeError(f"{method} {path} is not in the OpenAPI document")
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                raw = res.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            raise ApiError(e.code, json.loads(raw) if raw else None) from None

    def get(self, path):
        return self._send("GET", path)

    def post(self, path, body):
        return self._send("POST", path, body)

    def login(self, username, password):
        answer = self.post("/api/v1/login", {"username": username, "password": password})
        self.token = answer["token"]
        return answer["person"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--api", default=os.environ.get("TILLMESH_API", "http://127.0.0.1:7878"))
    p.add_argument("--username", default=os.environ.get("TILLMESH_USERNAME"))
    p.add_argument("--password", default=os.environ.get("TILLMESH_PASSWORD"))
    args = p.parse_args()
    if not args.username or not args.password:
        p.error("--username and --password (or TILLMESH_USERNAME / TILLMESH_PASSWORD) are needed")

    api = Tillmesh(args.api)
    doc = api.load_openapi()
    print(f"OpenAPI: {doc['info']['title']} {doc['info']['version']}, {len(api.routes)} operations")
    person = api.login(args.username, args.password)
    print(f"logged in as {person['name']} ({person['role']})")

    ids = {}
    for sku, name, price, tax_rate in [("PY-BAG", "Paper bag", 20, 1900), ("PY-MUG", "Mug", 899, 1900)]:
        try:
            product = api.post("/api/v1/products",
                               {"sku": sku, "name": name, "price": price, "tax_rate": tax_rate})
        except ApiError as e:
            if e.field != "sku":  # added before: the SKU is taken, use that product
                raise
            found = api.get("/api/v1/products?q=" + urllib.parse.quote(sku))
            product = next(x for x in found if x["sku"] == sku)
        ids[sku] = product["id"]
        api.post("/api/v1/stock/in", {"product_id": product["id"], "qty": 25, "unit_cost": 10})
        print(f"product {sku} {name}: {product['id']}")

    sale = api.post("/api/v1/sales", {
        "lines": [{"product_id": ids["PY-MUG"], "qty": 1}, {"product_id": ids["PY-BAG"], "qty": 2}],
        "payments": [{"method": "card"}],
    })
    print(f"sale {sale['receipt']}: total {sale['total']}, tax {sale['tax']}")

    day = sale["day"]
    for d in api.get(f"/api/v1/reports/daily?from={day}&to={day}"):
        print(f"report {d['day']}: {d['count']} sales, total {d['total']}, tax {d['tax']}")
    for s in api.get("/api/v1/stock"):
        if s["product_id"] in ids.values():
            print(f"stock {s['sku']}: {s['on_hand']}")
    for d in api.get("/api/v1/documents"):
        print(f"document {d['id']} ({d['kind']}): {d['changes']} changes, {d['size']} bytes")


if __name__ == "__main__":
    try:
        main()
    except (ApiError, RuntimeError, urllib.error.URLError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
