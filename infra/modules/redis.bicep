// Azure Managed Redis for the gateway's Store: TLS, Microsoft Entra authentication only (access
// keys off), no eviction of keys without TTL, AOF persistence (docs/production.md §4).
param location string
param tags object
param token string
@description('Principal (object) id of the gateway managed identity: its Redis user.')
param gatewayPrincipalId string

resource cache 'Microsoft.Cache/redisEnterprise@2025-04-01' = {
  name: 'redis-${token}'
  location: location
  tags: tags
  sku: { name: 'Balanced_B0' }
  properties: { minimumTlsVersion: '1.2' }
}

resource database 'Microsoft.Cache/redisEnterprise/databases@2025-04-01' = {
  parent: cache
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    // One endpoint (no cluster-aware client needed).
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'NoEviction'
    accessKeysAuthentication: 'Disabled'
    persistence: { aofEnabled: true, aofFrequency: '1s' }
  }
}

resource gatewayAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-04-01' = {
  parent: database
  name: guid(database.id, gatewayPrincipalId, 'default')
  properties: {
    accessPolicyName: 'default'
    user: { objectId: gatewayPrincipalId }
  }
}

output url string = 'rediss://${cache.properties.hostName}:10000'
output accessPolicyAssignment string = gatewayAccess.name
