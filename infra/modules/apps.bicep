// The two Container Apps. The gateway: public ingress on 8080 only, ≥ 2 replicas, liveness on
// /healthz (8080) and readiness on /readyz (admin listener 9464, never exposed). The snippets
// server: internal ingress only, reached by the gateway inside the environment.
param location string
param tags object
param environmentId string
param registryServer string
param gatewayAppName string
@description('The gateway public URL (its ingress FQDN); the OAuth issuer.')
param gatewayUrl string
param snippetsAppName string
param gatewayIdentityId string
param gatewayClientId string
param snippetsIdentityId string
param snippetsClientId string
@description('Client id of the Entra app registration.')
param entraClientId string
param vaultUri string
param redisUrl string
param storageAccountUrl string
param appInsightsConnectionString string

// Until azd deploys the real images.
var placeholderImage = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'

@description('A Container Apps secret read from the Key Vault by the given identity.')
func secretFromVault(vault string, name string, identity string) object => {
  name: name
  keyVaultUrl: '${vault}secrets/${name}'
  identity: identity
}

resource snippets 'Microsoft.App/containerApps@2024-03-01' = {
  name: snippetsAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'snippets' })
  identity: { type: 'UserAssigned', userAssignedIdentities: { '${snippetsIdentityId}': {} } }
  properties: {
    environmentId: environmentId
    configuration: {
      ingress: { external: false, targetPort: 7071, transport: 'http', allowInsecure: false }
      registries: [{ server: registryServer, identity: snippetsIdentityId }]
      secrets: [secretFromVault(vaultUri, 'snippets-key', snippetsIdentityId)]
    }
    template: {
      containers: [
        {
          name: 'snippets'
          image: placeholderImage
          resources: { cpu: json('0.25'), memory: '0.5Gi' }
          env: [
            { name: 'SNIPPETS_FUNCTION_KEY', secretRef: 'snippets-key' }
            { name: 'SNIPPETS_STORAGE', value: 'blob' }
            { name: 'AZURE_STORAGE_ACCOUNT_URL', value: storageAccountUrl }
            { name: 'AZURE_CLIENT_ID', value: snippetsClientId }
            { name: 'SNIPPETS_IDENTITY_JWKS_URL', value: '${gatewayUrl}/.well-known/jwks.json' }
            { name: 'SNIPPETS_IDENTITY_ISSUER', value: gatewayUrl }
            { name: 'SNIPPETS_IDENTITY_AUDIENCE', value: '${gatewayUrl}/mcp' }
          ]
        }
      ]
      scale: { minReplicas: 1, maxReplicas: 2 }
    }
  }
}

resource gateway 'Microsoft.App/containerApps@2024-03-01' = {
  name: gatewayAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'gateway' })
  identity: { type: 'UserAssigned', userAssignedIdentities: { '${gatewayIdentityId}': {} } }
  properties: {
    environmentId: environmentId
    configuration: {
      ingress: { external: true, targetPort: 8080, transport: 'http', allowInsecure: false }
      registries: [{ server: registryServer, identity: gatewayIdentityId }]
      secrets: [
        secretFromVault(vaultUri, 'gateway-encryption-key', gatewayIdentityId)
        secretFromVault(vaultUri, 'gateway-cookie-key', gatewayIdentityId)
        secretFromVault(vaultUri, 'gateway-signing-key', gatewayIdentityId)
        secretFromVault(vaultUri, 'snippets-key', gatewayIdentityId)
        // Not a secret: the config file, mounted through a secret volume.
        { name: 'gateway-config', value: loadTextContent('../gateway.yaml') }
      ]
    }
    template: {
      containers: [
        {
          name: 'gateway'
          image: placeholderImage
          args: ['serve', '--config', '/config/gateway.yaml']
          resources: { cpu: json('0.5'), memory: '1Gi' }
          volumeMounts: [{ volumeName: 'config', mountPath: '/config' }]
          env: [
            { name: 'GATEWAY_PUBLIC_URL', value: gatewayUrl }
            { name: 'ENTRA_TENANT_ID', value: tenant().tenantId }
            { name: 'ENTRA_CLIENT_ID', value: entraClientId }
            { name: 'AZURE_CLIENT_ID', value: gatewayClientId }
            { name: 'REDIS_URL', value: redisUrl }
            { name: 'SNIPPETS_URL', value: 'https://${snippets.properties.configuration.ingress.fqdn}/mcp' }
            { name: 'GATEWAY_ENCRYPTION_KEY', secretRef: 'gateway-encryption-key' }
            { name: 'GATEWAY_COOKIE_KEY', secretRef: 'gateway-cookie-key' }
            { name: 'GATEWAY_SIGNING_KEY', secretRef: 'gateway-signing-key' }
            { name: 'SNIPPETS_KEY', secretRef: 'snippets-key' }
            { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
          ]
          probes: [
            { type: 'Liveness', httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 10 }
            { type: 'Readiness', httpGet: { path: '/readyz', port: 9464 }, periodSeconds: 5 }
          ]
        }
      ]
      volumes: [{ name: 'config', storageType: 'Secret', secrets: [{ secretRef: 'gateway-config', path: 'gateway.yaml' }] }]
      // Above shutdownGraceSeconds (10) + 5 s.
      terminationGracePeriodSeconds: 20
      scale: { minReplicas: 2, maxReplicas: 6 }
    }
  }
}

output gatewayFqdn string = gateway.properties.configuration.ingress.fqdn
