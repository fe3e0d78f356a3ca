// The Entra app registration users sign in to, created with the Microsoft Graph Bicep extension.
// Its credential is a federated credential trusting the gateway's managed identity: no secret.
extension microsoftGraphV1

param token string
@description('The gateway public URL; Entra returns users to its /callback.')
param gatewayUrl string
@description('Principal (object) id of the gateway managed identity.')
param gatewayPrincipalId string

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: 'mcp-entra-gateway-${token}'
  displayName: 'MCP gateway (${token})'
  signInAudience: 'AzureADMyOrg'
  web: {
    // The gateway's redirect URI: publicUrl + /callback.
    redirectUris: ['${gatewayUrl}/callback']
  }
  // Arrive in the identity assertion's `roles`; the snippets server may check them.
  appRoles: [
    {
      id: guid(token, 'Snippets.Read')
      value: 'Snippets.Read'
      displayName: 'Snippets.Read'
      description: 'Read snippets'
      allowedMemberTypes: ['User']
      isEnabled: true
    }
    {
      id: guid(token, 'Snippets.Write')
      value: 'Snippets.Write'
      displayName: 'Snippets.Write'
      description: 'Save snippets'
      allowedMemberTypes: ['User']
      isEnabled: true
    }
  ]

  resource gatewayIdentity 'federatedIdentityCredentials@v1.0' = {
    name: '${app.uniqueName}/gateway-identity'
    description: 'The gateway managed identity is this app credential'
    audiences: ['api://AzureADTokenExchange']
    issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
    subject: gatewayPrincipalId
  }
}

resource principal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

output clientId string = app.appId
output servicePrincipalId string = principal.id
