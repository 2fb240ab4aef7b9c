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
})
