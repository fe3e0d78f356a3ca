// azd template: the gateway and the snippets MCP server on Azure Container Apps, signing users in
// with an Entra app registration whose credential is the gateway's managed identity (no secret).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region of every resource.')
param location string

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var gatewayAppName = 'gateway-${token}'

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  scope: group
  params: { location: location, tags: tags, token: token }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: group
  params: { location: location, tags: tags, token: token }
}

module environment 'modules/environment.bicep' = {
  name: 'environment'
  scope: group
  params: {
    location: location
    tags: tags
    token: token
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    pullPrincipalIds: [identities.outputs.gatewayPrincipalId, identities.outputs.snippetsPrincipalId]
  }
}

// The gateway's public URL: its Container App's ingress name in the environment's domain.
var gatewayUrl = 'https://${gatewayAppName}.${environment.outputs.defaultDomain}'

module entraApp 'modules/entra-app.bicep' = {
  name: 'entra-app'
  scope: group
  params: {
    token: token
    gatewayUrl: gatewayUrl
    gatewayPrincipalId: identities.outputs.gatewayPrincipalId
  }
}

module keys 'modules/keys.bicep' = {
  name: 'keys'
  scope: group
  params: {
    location: location
    tags: tags
    token: token
    readerPrincipalIds: [identities.outputs.gatewayPrincipalId, identities.outputs.snippetsPrincipalId]
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  scope: group
  params: { location: location, tags: tags, token: token, gatewayPrincipalId: identities.outputs.gatewayPrincipalId }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: group
  params: { location: location, tags: tags, token: token, snippetsPrincipalId: identities.outputs.snippetsPrincipalId }
}

module apps 'modules/apps.bicep' = {
  name: 'apps'
  scope: group
  params: {
    location: location
    tags: tags
    environmentId: environment.outputs.environmentId
    registryServer: environment.outputs.registryServer
    gatewayAppName: gatewayAppName
    gatewayUrl: gatewayUrl
    snippetsAppName: 'snippets-${token}'
    gatewayIdentityId: identities.outputs.gatewayIdentityId
    gatewayClientId: identities.outputs.gatewayClientId
    snippetsIdentityId: identities.outputs.snippetsIdentityId
    snippetsClientId: identities.outputs.snippetsClientId
    entraClientId: entraApp.outputs.clientId
    vaultUri: keys.outputs.vaultUri
    redisUrl: redis.outputs.url
    storageAccountUrl: storage.outputs.blobUrl
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
  }
}

output AZURE_CONTAINER_REGISTRY_ENDPOINT string = environment.outputs.registryServer
output AZURE_RESOURCE_GROUP string = group.name
output ENTRA_APP_CLIENT_ID string = entraApp.outputs.clientId
@description('The MCP URL: give it to an MCP client (it signs in with Entra on first use).')
output MCP_URL string = '${gatewayUrl}/mcp'
