#!/usr/bin/env python3
"""Tests of driver.py's pure parts (stdlib unittest; `python3 hack/conformance/test_driver.py`).
The rest of the driver is exercised only by a run against the suite (docs/conformance.md)."""
import base64, os, shutil, sys, tempfile, unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import driver  # noqa: E402


def num(v):
    return int.from_bytes(base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)), "big")


class RsaJwk(unittest.TestCase):
    def setUp(self):
        driver.RUN = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(driver.RUN)

    def test_private_jwk_is_a_consistent_rsa_2048_key(self):
        j = driver.rsa_jwk("k1", True)
        n, e, d, p, q = (num(j[k]) for k in ("n", "e", "d", "p", "q"))
        self.assertEqual(n.bit_length(), 2048)
        self.assertEqual(p * q, n)
        self.assertEqual(pow(pow(4242, e, n), d, n), 4242)
        self.assertEqual(num(j["dp"]), d % (p - 1))
        self.assertEqual(num(j["dq"]), d % (q - 1))
        self.assertEqual(num(j["qi"]) * q % p, 1)
        self.assertEqual((j["kid"], j["alg"], j["use"]), ("k1", "PS256", "sig"))

    def test_public_jwk_carries_no_private_member(self):
        j = driver.rsa_jwk("k2", False)
        self.assertFalse({"d", "p", "q", "dp", "dq", "qi"} & set(j))
        self.assertEqual(num(j["n"]).bit_length(), 2048)

    def test_throwaway_client_is_a_public_jwks_and_a_certificate(self):
        jwks, cert = driver.throwaway_client()
        self.assertEqual(len(jwks["keys"]), 1)
        self.assertNotIn("d", jwks["keys"][0])
        self.assertTrue(cert.startswith("-----BEGIN CERTIFICATE-----"))


if __name__ == "__main__":
    unittest.main()
