// Medusa configuration for erpsync's tests: plain CommonJS (no TypeScript build), no admin
// dashboard (no vite build), everything else from the environment that ensure.py sets.
const { loadEnv, defineConfig } = require('@medusajs/framework/utils')

loadEnv(process.env.NODE_ENV || 'development', process.cwd())

module.exports = defineConfig({
  projectConfig: {
    databaseUrl: process.env.DATABASE_URL,
    http: {
      storeCors: 'http://127.0.0.1:8000',
      adminCors: 'http://127.0.0.1:9000',
      authCors: 'http://127.0.0.1:9000',
      jwtSecret: process.env.JWT_SECRET || 'supersecret',
      cookieSecret: process.env.COOKIE_SECRET || 'supersecret',
    },
  },
  admin: { disable: true },
  // Uploaded files (invoice PDFs) are served by the server itself under /static: their URLs
  // must name the port this server listens on, not the provider's default localhost:9000.
  modules: [
    {
      resolve: '@medusajs/medusa/file',
      options: {
        providers: [
          {
            resolve: '@medusajs/medusa/file-local',
            id: 'local',
            options: { backend_url: `http://${process.env.HOST || 'localhost'}:${process.env.PORT || 9000}/static` },
          },
        ],
      },
    },
  ],
})
