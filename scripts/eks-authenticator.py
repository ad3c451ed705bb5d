#!/usr/bin/env python3
"""The cloud token authenticator of bmac's test kube-apiserver: EKS tokens as EKS checks them,
Google access tokens as GKE checks them (Python 3 standard library; the file name is from when
it knew EKS only).

It serves the Kubernetes webhook token authentication API: kube-apiserver, started with
`--authentication-token-webhook-config-file` pointing here, POSTs an
`authentication.k8s.io/v1` (or `v1beta1`) TokenReview to /authenticate for every bearer token
its other authenticators do not know, and this server answers authenticated or not, in the
review's own version, with HTTP 200 (a rejection carries its reason in `status.error`, which
the API server logs and returns in TokenReview API answers). A token is EKS's when it starts
with `k8s-aws-v1.`, Google's when it starts with `ya29.` (the prefix of Google OAuth access
tokens); any other is rejected.

EKS. It does for `k8s-aws-v1.` tokens what aws-iam-authenticator does on EKS (pkg/token Verify):
  - the token is at most 4 KiB, `k8s-aws-v1.` + unpadded base64url of an https URL with path
    `/` on `sts.amazonaws.com` or `sts.<region>.amazonaws.com[.cn]` (no port);
  - only the query parameters aws-iam-authenticator allows, each once; Action=GetCallerIdentity;
    `x-k8s-aws-id` among X-Amz-SignedHeaders; 0 <= X-Amz-Expires <= 900; X-Amz-Date present,
    and not more than 15 minutes old (presigned STS URLs live 15 minutes from their signing
    time, whatever X-Amz-Expires says);
  - then it sends the presigned GET to STS with the header `x-k8s-aws-id: <cluster id>` and
    `accept: application/json`, and takes the identity STS returns (to moto, the same
    signature also goes in an Authorization header, which moto needs to route the request to
    STS; see get_caller_identity).
STS is moto here, which does not check signatures, so this server also does what real STS
does before answering: it verifies the SigV4 query signature with the secret of the token's
access key (from --credentials), computing the canonical request with *its own* cluster id
as the `x-k8s-aws-id` value: a token signed for another cluster fails here, as it fails at STS.
It also refuses a signature dated more than 15 minutes in the future (STS's clock-skew rule)
and a credential scope that is not `<date>/<region of the host>/sts/aws4_request`.

The identity is mapped as EKS access entries map it: the ARN STS returned is canonicalised
(an assumed-role session becomes its role ARN, as aws-iam-authenticator does) and looked up in
the --access-entries file, re-read for every review so that changing it acts at once, as the
EKS access-entry API does:
    {"accessEntries": [{"principalArn": "arn:aws:iam::123456789012:role/admins",
                        "kubernetesGroups": ["system:masters"],
                        "username": "optional; default: the ARN STS returned"}]}
(an entry with the AmazonEKSClusterAdminPolicy is written as the group system:masters).
An ARN with no entry is not authenticated. moto answers every presigned request with its
fallback identity `arn:aws:sts::<account>:user/moto`, an ARN shape real STS never returns; it is
accepted as it is (aws-iam-authenticator would refuse to canonicalise it).

GKE. GKE's API server takes a Google OAuth access token of the caller (what
gke-gcloud-auth-plugin hands kubectl) and authenticates it as the Google account: the username
is the account's e-mail address (a user's, or a service account's
`NAME@PROJECT.iam.gserviceaccount.com`), with no groups of its own; what the account may do is
then its IAM roles' and RBAC's affair. Here the token is asked about at the token's issuer,
bmac's Google Cloud API test server, through its tokeninfo endpoint (the shape of Google's
`https://oauth2.googleapis.com/tokeninfo?access_token=`): an answer of 200 with a verified
`email`, time left (`expires_in` > 0) and the `cloud-platform` scope authenticates that e-mail
(uid: the account's `sub`); a 400 `invalid_token` or anything else is a rejection. The test
server starts after the apiserver on a port nobody knows beforehand, so its tokeninfo URL is
read, for every review, from the file given with --gke-tokeninfo-file (scripts/gcp-env.sh
writes it): no file, an empty one or a URL that is not http(s) on 127.0.0.1 rejects every
Google token, saying so.

Fails closed: without --sts-endpoint every EKS token is rejected, and without a tokeninfo URL
every Google token, with a reason saying so.
Tokens are secrets: none is logged or echoed; each review logs one line (outcome, reason, ARN
or e-mail).

Usage: eks-authenticator.py --port PORT --cluster-id NAME --credentials FILE
           --access-entries FILE [--tls-cert FILE --tls-key FILE]
           [--sts-endpoint https://127.0.0.1:PORT --sts-ca FILE]
           [--gke-tokeninfo-file FILE]
Listens on 127.0.0.1 only; HTTPS when given a certificate. GET /healthz answers "ok".
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
import http.client
import json
import re
import ssl
import sys
import threading
import urllib.parse
import xml.etree.ElementTree as ElementTree
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

V1_PREFIX = "k8s-aws-v1."
# Google OAuth 2 access tokens start with this.
GOOGLE_PREFIX = "ya29."
# The scope a Google token needs to reach GKE.
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
MAX_TOKEN_BYTES = 4 * 1024
CLUSTER_ID_HEADER = "x-k8s-aws-id"
# Presigned STS URLs are valid for 15 minutes after X-Amz-Date, whatever X-Amz-Expires says.
PRESIGNED_URL_LIFETIME = datetime.timedelta(minutes=15)
# STS refuses a signature this far ahead of its clock.
MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# aws-iam-authenticator's parameterWhitelist.
ALLOWED_PARAMETERS = {
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
}
REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
STS_HOST = re.compile(r"^sts(?:\.(" + REGION + r"))?\.amazonaws\.com(\.cn)?$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
REVIEW_VERSIONS = ("authentication.k8s.io/v1", "authentication.k8s.io/v1beta1")


class Rejected(Exception):
    """The token is not good: the reason goes into the review's status.error."""


def log(message):
    sys.stderr.write("[eks-authenticator] %s\n" % message)
    sys.stderr.flush()


def sts_region(host):
    """The signing region of an STS host, or Rejected when the host is not STS."""
    match = STS_HOST.match(host)
    if not match:
        raise Rejected("unexpected hostname %r in pre-signed URL" % host)
    region, china = match.group(1), match.group(2)
    if region is None:
        if china:
            raise Rejected("unexpected hostname %r in pre-signed URL" % host)
        return "us-east-1"
    if bool(china) != region.startswith("cn-"):
        raise Rejected("unexpected hostname %r in pre-signed URL" % host)
    return region


def uri_encode(text):
    """SigV4's URI encoding: everything but the unreserved characters."""
    return urllib.parse.quote(text, safe="-_.~")


def parse_token(token):
    """The presigned URL of a token and its query parameters (lower-cased names)."""
    if len(token.encode()) > MAX_TOKEN_BYTES:
        raise Rejected("token is too large")
    if not token.startswith(V1_PREFIX):
        raise Rejected("token is missing expected %r prefix" % V1_PREFIX)
    body = token[len(V1_PREFIX):]
    if "=" in body:
        raise Rejected("token is not unpadded base64url")
    try:
        url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise Rejected("token is not base64url: %s" % e)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https":
        raise Rejected("unexpected scheme %r in pre-signed URL" % parsed.scheme)
    if parsed.path != "/":
        raise Rejected("unexpected path in pre-signed URL")
    if parsed.fragment or parsed.username or parsed.password:
        raise Rejected("malformed pre-signed URL")
    region = sts_region(parsed.netloc)
    try:
        pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise Rejected("malformed query parameter")
    params = {}
    for key, value in pairs:
        lower = key.lower()
        if lower not in ALLOWED_PARAMETERS:
            raise Rejected("non-whitelisted query parameter %r" % key)
        if lower in params:
            raise Rejected("query parameter with multiple values not supported")
        params[lower] = value
    return parsed, region, pairs, params


def check_token(params, now):
    """aws-iam-authenticator's checks of the parameters; returns the signing time."""
    if params.get("action") != "GetCallerIdentity":
        raise Rejected("unexpected action parameter in pre-signed URL")
    signed = [h.lower() for h in params.get("x-amz-signedheaders", "").split(";")]
    if CLUSTER_ID_HEADER not in signed:
        raise Rejected(
            "client did not sign the %s header in the pre-signed URL" % CLUSTER_ID_HEADER
        )
    expires = params.get("x-amz-expires", "")
    if not re.fullmatch(r"\d+", expires) or int(expires) > 900:
        raise Rejected("invalid X-Amz-Expires parameter in pre-signed URL: %r" % expires)
    date = params.get("x-amz-date")
    if not date:
        raise Rejected("X-Amz-Date parameter must be present in pre-signed URL")
    try:
        signed_at = datetime.datetime.strptime(date, DATE_FORMAT).replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError:
        raise Rejected("error parsing X-Amz-Date parameter %s" % date)
    if now > signed_at + PRESIGNED_URL_LIFETIME:
        raise Rejected(
            "X-Amz-Date parameter is expired (15 minute expiration) %s" % signed_at.isoformat()
        )
    return signed_at


def verify_signature(parsed, region, pairs, params, cluster_id, secrets, now, signed_at):
    """SigV4 query-signature verification, as STS does it (moto does not)."""
    if params.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise Rejected("STS: unsupported X-Amz-Algorithm")
    if signed_at > now + MAX_CLOCK_SKEW:
        raise Rejected("STS: signature not yet current: X-Amz-Date %s" % signed_at.isoformat())
    scope = params.get("x-amz-credential", "").split("/")
    if len(scope) != 5:
        raise Rejected("STS: malformed X-Amz-Credential")
    key_id, day, scope_region, service, terminator = scope
    if day != params["x-amz-date"][:8] or service != "sts" or terminator != "aws4_request":
        raise Rejected("STS: credential scope %s does not match the request" % "/".join(scope[1:]))
    if scope_region != region:
        raise Rejected(
            "STS: credential should be scoped to region %r, not %r" % (region, scope_region)
        )
    secret = secrets.get(key_id)
    if secret is None:
        raise Rejected("STS: InvalidClientTokenId: the access key %s is not known" % key_id)
    signed = params["x-amz-signedheaders"].split(";")
    if signed != sorted(signed) or any(h not in ("host", CLUSTER_ID_HEADER) for h in signed):
        raise Rejected("STS: signed headers %s are not the ones the request carries" % signed)
    values = {"host": parsed.netloc.lower(), CLUSTER_ID_HEADER: cluster_id}
    query = "&".join(
        sorted(
            "%s=%s" % (uri_encode(k), uri_encode(v))
            for k, v in pairs
            if k.lower() != "x-amz-signature"
        )
    )
    headers = "".join("%s:%s\n" % (h, values[h]) for h in signed)
    canonical = "\n".join(["GET", "/", query, headers, ";".join(signed), EMPTY_SHA256])
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["x-amz-date"],
            "/".join(scope[1:]),
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (day, scope_region, service, terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params.get("x-amz-signature", "")):
        raise Rejected(
            "STS: SignatureDoesNotMatch (the token was not signed by %s for cluster %r)"
            % (key_id, cluster_id)
        )


def get_caller_identity(parsed, params, cluster_id, endpoint, ca):
    """Sends the presigned request to STS (at `endpoint`, with the token's Host) and returns
    its identity: Arn, Account, UserId.

    moto's server picks the service of a request from its Authorization header only (not from
    the Host, nor from a presigned query), so the forwarded request also carries the same
    signature as an `Authorization: AWS4-HMAC-SHA256 Credential=…` header: moto routes it to
    STS and reads the access key from it; real STS would take either form."""
    if endpoint is None:
        raise Rejected(
            "no STS endpoint is configured (this authenticator was started without "
            "--sts-endpoint; start moto first so kube-env passes it)"
        )
    target = urllib.parse.urlsplit(endpoint)
    context = ssl.create_default_context(cafile=ca)
    connection = http.client.HTTPSConnection(
        target.hostname, target.port or 443, timeout=10, context=context
    )
    try:
        routing = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (
            params["x-amz-credential"],
            params["x-amz-signedheaders"],
            params["x-amz-signature"],
        )
        connection.request(
            "GET",
            "/?" + parsed.query,
            headers={
                "Host": parsed.netloc,
                CLUSTER_ID_HEADER: cluster_id,
                "accept": "application/json",
                "Authorization": routing,
            },
        )
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise Rejected("error calling STS: %s" % e)
    finally:
        connection.close()
    if response.status != 200:
        raise Rejected(
            "error from AWS (expected 200, got %d). Body: %s"
            % (response.status, body[:300].decode(errors="replace"))
        )
    try:
        result = json.loads(body)["GetCallerIdentityResponse"]["GetCallerIdentityResult"]
        return {k: result[k] for k in ("Arn", "Account", "UserId")}
    except (ValueError, KeyError, TypeError):
        pass
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise Rejected("STS answered neither JSON nor XML")
    found = {}
    for element in root.iter():
        name = element.tag.rsplit("}", 1)[-1]
        if name in ("Arn", "Account", "UserId"):
            found[name] = (element.text or "").strip()
    if not found.get("Arn"):
        raise Rejected("STS's answer has no Arn")
    return found


def canonical_arn(arn):
    """aws-iam-authenticator's arn.Canonicalize, plus moto's fallback `sts::…:user/moto`."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[1] not in ("aws", "aws-cn", "aws-us-gov"):
        raise Rejected("arn %r is invalid" % arn)
    _, partition, service, _, account, resource = parts
    pieces = resource.split("/")
    if service == "sts":
        if pieces[0] == "federated-user" or pieces[0] == "user":
            return arn
        if pieces[0] == "assumed-role":
            if len(pieces) < 3:
                raise Rejected("assumed-role arn %r does not have a role" % arn)
            return "arn:%s:iam::%s:role/%s" % (partition, account, "/".join(pieces[1:-1]))
        raise Rejected("unrecognized resource %s for service sts" % resource)
    if service == "iam" and pieces[0] in ("role", "user", "root"):
        return arn
    raise Rejected("service %s in arn %s is not a valid service for identities" % (service, arn))


def access_entry(path, arn):
    """The access entry for `arn` in the file at `path` (read now), or Rejected."""
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f).get("accessEntries", [])
    except FileNotFoundError:
        entries = []
    except (OSError, ValueError, AttributeError) as e:
        raise Rejected("access entries unreadable: %s" % e)
    for entry in entries:
        if isinstance(entry, dict) and entry.get("principalArn") == arn:
            return entry
    raise Rejected("ARN is not mapped: %s has no access entry" % arn)


def tokeninfo_url(path):
    """The test server's tokeninfo URL, read now from the file at `path`, or Rejected."""
    if path is None:
        raise Rejected("no --gke-tokeninfo-file was given: Google tokens are not accepted")
    try:
        with open(path, encoding="utf-8") as f:
            url = f.read().strip()
    except FileNotFoundError:
        url = ""
    except OSError as e:
        raise Rejected("the tokeninfo file %s is unreadable: %s" % (path, e))
    if not url:
        raise Rejected(
            "no Google tokeninfo endpoint is known yet (%s is empty: scripts/gcp-env.sh start "
            "writes it)" % path
        )
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or parsed.hostname != "127.0.0.1":
        raise Rejected("the tokeninfo endpoint %r is not on 127.0.0.1" % url)
    return parsed


def google_token_info(token, path):
    """What the token's issuer says of a Google access token: its tokeninfo answer."""
    target = tokeninfo_url(path)
    connection_type = (
        http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(target.hostname, target.port, timeout=10)
    query = urllib.parse.urlencode({"access_token": token})
    try:
        connection.request("GET", "%s?%s" % (target.path or "/tokeninfo", query))
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise Rejected("error calling Google's tokeninfo: %s" % e)
    finally:
        connection.close()
    try:
        info = json.loads(body)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise Rejected("tokeninfo answered %d without a JSON object" % response.status)
    if response.status != 200:
        raise Rejected(
            "tokeninfo refused the token: %s (%s)"
            % (info.get("error", response.status), info.get("error_description", ""))
        )
    return info


def google_user(info):
    """The Kubernetes user GKE makes of a tokeninfo answer, or Rejected."""
    email = info.get("email")
    if not isinstance(email, str) or not email:
        raise Rejected("the Google token carries no e-mail address")
    if str(info.get("email_verified")).lower() != "true":
        raise Rejected("the e-mail address of the Google token is not verified")
    try:
        left = int(info.get("expires_in", "0"))
    except (TypeError, ValueError):
        left = 0
    if left <= 0:
        raise Rejected("the Google token has expired")
    if CLOUD_PLATFORM_SCOPE not in str(info.get("scope", "")).split():
        raise Rejected("the Google token lacks the %s scope" % CLOUD_PLATFORM_SCOPE)
    return {
        "authenticated": True,
        "user": {"username": email, "uid": str(info.get("sub", "")), "groups": []},
    }


class Authenticator:
    """The verification and mapping, with the server's configuration."""

    def __init__(self, args):
        self.cluster_id = args.cluster_id
        self.access_entries = args.access_entries
        self.sts_endpoint = args.sts_endpoint
        self.sts_ca = args.sts_ca
        self.tokeninfo_file = args.gke_tokeninfo_file
        with open(args.credentials, encoding="utf-8") as f:
            self.secrets = json.load(f)

    def review(self, token, now=None):
        """The TokenReview status for `token`: a Google token's or an EKS token's."""
        if token.startswith(GOOGLE_PREFIX):
            return google_user(google_token_info(token, self.tokeninfo_file))
        return self.review_eks(token, now)

    def review_eks(self, token, now=None):
        """The TokenReview status for an EKS token."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        parsed, region, pairs, params = parse_token(token)
        signed_at = check_token(params, now)
        verify_signature(parsed, region, pairs, params, self.cluster_id, self.secrets, now,
                         signed_at)
        identity = get_caller_identity(parsed, params, self.cluster_id, self.sts_endpoint, self.sts_ca)
        arn = identity["Arn"]
        canonical = canonical_arn(arn)
        entry = access_entry(self.access_entries, canonical)
        groups = entry.get("kubernetesGroups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Rejected("access entry for %s has malformed kubernetesGroups" % canonical)
        key_id = params["x-amz-credential"].split("/")[0]
        return {
            "authenticated": True,
            "user": {
                "username": entry.get("username") or arn,
                "uid": "aws-iam-authenticator:%s:%s"
                % (identity.get("Account", ""), identity.get("UserId", "")),
                "groups": groups,
                "extra": {
                    "arn": [arn],
                    "canonicalArn": [canonical],
                    "principalId": [identity.get("UserId", "")],
                    "accessKeyId": [key_id],
                },
            },
        }


class Handler(BaseHTTPRequestHandler):
    """POST /authenticate (TokenReview), GET /healthz."""

    server_version = "bmac-eks-authenticator"
    authenticator = None  # set in main

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # one line per review instead, without request lines

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self):
        """The request's path without its query (the API server adds `?timeout=…`)."""
        return urllib.parse.urlsplit(self.path).path

    def do_GET(self):
        if self.route() == "/healthz":
            self.reply(200, b"ok", "text/plain")
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.route() != "/authenticate":
            self.reply(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            review = json.loads(self.rfile.read(min(length, 1 << 20)))
            version = review.get("apiVersion")
            token = review["spec"]["token"]
            if review.get("kind") != "TokenReview" or version not in REVIEW_VERSIONS:
                raise ValueError("not a TokenReview")
            if not isinstance(token, str):
                raise ValueError("spec.token is not a string")
        except (ValueError, KeyError, TypeError, AttributeError):
            self.reply(400, {"error": "expected a TokenReview request"})
            return
        try:
            status = self.authenticator.review(token)
            user = status["user"]
            log("authenticated %s as %s (groups %s)" % (
                user.get("extra", {}).get("arn", ["a Google token"])[0],
                user["username"],
                ",".join(user["groups"]) or "none",
            ))
        except Rejected as e:
            status = {"authenticated": False, "error": "eks-authenticator: %s" % e}
            log("rejected: %s" % e)
        except Exception as e:  # a bug here must not authenticate anyone
            status = {"authenticated": False, "error": "eks-authenticator: internal error"}
            log("internal error: %r" % e)
        self.reply(200, {"apiVersion": version, "kind": "TokenReview", "status": status})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cluster-id", required=True)
    parser.add_argument("--credentials", required=True,
                        help="JSON object: access key id -> secret access key")
    parser.add_argument("--access-entries", required=True)
    parser.add_argument("--sts-endpoint")
    parser.add_argument("--sts-ca")
    parser.add_argument("--gke-tokeninfo-file",
                        help="a file holding the Google tokeninfo URL, read for every review")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    Handler.authenticator = Authenticator(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    scheme = "http"
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    log("cluster %s, STS %s, Google tokeninfo from %s, serving %s://127.0.0.1:%d/authenticate" % (
        args.cluster_id, args.sts_endpoint or "(none: every EKS token is rejected)",
        args.gke_tokeninfo_file or "(none: every Google token is rejected)", scheme, args.port))
    threading.current_thread().name = "eks-authenticator"
    server.serve_forever()


if __name__ == "__main__":
    main()
