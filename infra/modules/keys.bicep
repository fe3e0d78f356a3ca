// Key Vault with the gateway's keys and the snippets server's key, generated once at provision
// time inside Azure by a deployment script (openssl in the Azure CLI image) and never replaced:
// a new key would sign everyone out. The values never appear in deployment outputs or history.
param location string
param tags object
param token string
@description('Identities that read the secrets (the apps).')
param readerPrincipalIds array

var roles = loadJsonContent('../roles.json')

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${token}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    enablePurgeProtection: true
  }
}

resource readers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in readerPrincipalIds: {
  name: guid(vault.id, principalId, roles.KeyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.KeyVaultSecretsUser)
  }
}]

resource generator 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-keys-${token}'
  location: location
  tags: tags
}

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, generator.id, roles.KeyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: generator.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.KeyVaultSecretsOfficer)
  }
}

resource generate 'Microsoft.Resources/deploymentScripts@2023-08-01' = {
  name: 'generate-keys-${token}'
  location: location
  tags: tags
  kind: 'AzureCLI'
  identity: { type: 'UserAssigned', userAssignedIdentities: { '${generator.id}': {} } }
  dependsOn: [writer]
  properties: {
    azCliVersion: '2.67.0'
    retentionInterval: 'PT1H'
    cleanupPreference: 'Always'
    environmentVariables: [{ name: 'VAULT', value: vault.name }]
    scriptContent: loadTextContent('generate-keys.sh')
  }
}

output vaultUri string = vault.properties.vaultUri
output generated string = generate.name
