#!/usr/bin/env bash
# Generates the test cluster's PKI with openssl: a cluster CA, the apiserver's serving
# certificate, the service-account signing key pair, client certificates (groups as O), and the
# OpenID provider's CA and serving certificate.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mkdir -p "$pki"
cd "$pki"
days=365

openssl_quiet() { openssl "$@" 2>/dev/null; }

openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=langgraph-jit-test-cluster-ca" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# The front proxy's own CA: the headers it sends name any user, so no cluster client may hold it.
openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=langgraph-jit-test-front-proxy-ca" -keyout front-proxy-ca.key -out front-proxy-ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# The OpenID provider's own CA: the API server trusts it for the issuer alone.
openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=langgraph-jit-test-oidc-ca" -keyout oidc-ca.key -out oidc-ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# sign NAME SUBJECT EXTENSIONS [CA]: a P-256 key and a certificate signed by the CA (the cluster's).
sign() {
  local name="$1" subject="$2" extensions="$3" ca="${4:-ca}"
  openssl_quiet req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
    -keyout "$name.key" -out "$name.csr"
  openssl_quiet x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
    -days "$days" -extfile <(printf '%s\n' "$extensions") -out "$name.crt"
  rm -f "$name.csr"
}

client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$node_ip,IP:${SERVICE_IP:-10.96.0.1},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

sign admin "/CN=admin/O=system:masters" "$client"
sign kube-controller-manager "/CN=system:kube-controller-manager" "$client"
sign kube-scheduler "/CN=system:kube-scheduler" "$client"
# The node: the Node authorizer and NodeRestriction know a kubelet by exactly this name and group.
sign kubelet "/CN=system:node:$node_name/O=system:nodes" "$client"
sign kube-proxy "/CN=system:kube-proxy" "$client"
# The node's NetworkPolicy enforcer; node-up.sh grants it read access to what policies name.
sign kube-router "/CN=system:kube-router" "$client"
sign kubelet-serving "/CN=$node_name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$node_ip,DNS:$node_name"
# The apiserver's identity towards the kubelet (logs, exec, port-forward).
sign apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" "$client"

# The aggregator's identity towards extension API servers (the operator's session API).
sign front-proxy-client "/CN=front-proxy-client" "$client" front-proxy-ca

# The OpenID provider (Dex) on loopback.
sign dex "/CN=dex" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost" oidc-ca

# Test identities: what the product sees as requesters and approvers.
sign alice "/CN=alice@example.com/O=ml-platform" "$client"
sign bob "/CN=bob@example.com/O=security" "$client"
sign mallory "/CN=mallory@example.com" "$client"

openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
openssl_quiet pkey -in sa.key -pubout -out sa.pub
chmod 600 ./*.key
