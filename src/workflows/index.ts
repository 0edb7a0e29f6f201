/** The workflows the worker bundles. */
export { migrateTenant } from './migrate-tenant';
export { migrateContainer } from './migrate-container';
