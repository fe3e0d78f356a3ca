#!/bin/sh
# Run by keys.bicep's deployment script: each secret is made once (an existing one is kept).
set -eu
put() { # name, command producing the value on stdout
  if ! az keyvault secret show --vault-name "$VAULT" --name "$1" --query id -o tsv >/dev/null 2>&1; then
    sh -c "$2" > /tmp/value
    az keyvault secret set --vault-name "$VAULT" --name "$1" --file /tmp/value --output none
    rm -f /tmp/value
  fi
}
# secrets.encryptionKeys[0].key: 32 random bytes, base64
put gateway-encryption-key 'openssl rand -base64 32 | tr -d "\n"'
# secrets.cookieKey: 48 random bytes, base64
put gateway-cookie-key 'openssl rand -base64 48 | tr -d "\n"'
# secrets.signingKey: P-256 private key, PKCS#8 PEM
put gateway-signing-key 'openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256'
# the snippets server's function key (backends[0].credential.value)
put snippets-key 'openssl rand -hex 32 | tr -d "\n"'
