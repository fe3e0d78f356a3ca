// One user-assigned identity per app: the gateway's is also the Entra app's federated credential.
param location string
param tags object
param token string

resource gateway 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-gateway-${token}'
  location: location
  tags: tags
}

resource snippets 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-snippets-${token}'
  location: location
  tags: tags
}

output gatewayIdentityId string = gateway.id
output gatewayClientId string = gateway.properties.clientId
output gatewayPrincipalId string = gateway.properties.principalId
output snippetsIdentityId string = snippets.id
output snippetsClientId string = snippets.properties.clientId
output snippetsPrincipalId string = snippets.properties.principalId
